"""The docker-compose stack, checked the way a user would find it broken (no Docker engine needed).

`docker compose up` on a user's machine fails late and far from the cause: a typo in an ACCOUNTS_*
name is silently ignored, a missing mount becomes an empty directory, a shell `$var` in a command is
eaten by Compose's interpolation. These tests parse the files instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from accounts.settings import Settings
from accounts.temporal import SERVER_DYNAMIC_CONFIG
from worker import graceful_shutdown_timeout

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = {"migrate": ["db", "upgrade"], "worker": ["worker"], "api": ["api"]}
SEARCH_ATTRIBUTES = ("CustomerReference", "LifecycleStage", "Channel")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# secrets compose must refuse to start without (${NAME:?...}); tests fill in what a user would set
REQUIRED = {
    "ACCOUNTS_SECRET_KEY": "0123456789abcdef0123456789abcdef0123456789abcdef",  # openssl rand -hex 32
    "ACCOUNTS_PAYLOAD_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",  # openssl rand -base64 32
    "ACCOUNTS_MFA_ENCRYPTION_KEY": "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",  # openssl rand -base64 32
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


COMPOSE = _load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def expand(value: Any) -> str | None:
    """A compose value as a user without a .env file gets it: every ${VAR:-default} at its default."""
    if value is None:
        return None
    text = str(value).replace("$$", "\0")
    text = INTERPOLATION.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else REQUIRED.get(m["name"], ""), text)
    return text.replace("\0", "$")


def environment(service: str) -> dict[str, str | None]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: expand(value) for key, value in env.items()}


def depends_on(service: str) -> dict[str, str]:
    deps = SERVICES[service].get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_text(service: str) -> str:
    parts: list[Any] = []
    for key in ("entrypoint", "command"):
        value = SERVICES[service].get(key)
        parts.extend(value if isinstance(value, list) else [value] if value else [])
    return expand(" ".join(str(part) for part in parts)) or ""


def published_ports(service: str) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("127.0.0.1:8233:8080") or long syntax."""
    pairs = set()
    for entry in SERVICES[service].get("ports", []):
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
        else:
            *_, host, container = (expand(entry) or "").split(":")
            pairs.add((int(host), int(container.split("/")[0])))
    return pairs


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of every bind mount from the repository."""
    mounts = {}
    for entry in SERVICES[service].get("volumes", []):
        if isinstance(entry, dict):
            source, target = entry.get("source", ""), entry["target"]
        else:
            source, target = (expand(entry) or "").split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in joined.splitlines())
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


# --- images and dependencies -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_built_here_or_pins_its_image(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        return
    image = expand(service.get("image"))
    assert image, f"{name} has neither image nor build"
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
    assert tag != "latest", f"{name}: image {image!r} is not pinned"


def test_no_deprecated_auto_setup_image() -> None:
    images = [expand(service.get("image")) or "" for service in SERVICES.values()]
    assert not [image for image in images if "auto-setup" in image]
    assert any(image.startswith("temporalio/server:") for image in images)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_exist_and_their_conditions_can_be_met(name: str) -> None:
    for target, condition in depends_on(name).items():
        assert target in SERVICES, f"{name} depends on unknown service {target!r}"
        assert condition in CONDITIONS, f"{name} -> {target}: invalid condition {condition!r}"
        if condition == "service_healthy":
            assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy: no healthcheck"
        if condition == "service_completed_successfully":
            restart = str(SERVICES[target].get("restart", "no"))
            assert restart == "no", f"{name} waits for {target} to exit, but it restarts ({restart})"


def test_temporal_starts_after_its_schema_job_and_the_app_after_migrations_and_setup() -> None:
    assert depends_on("temporal") == {"temporal-admin-tools": "service_completed_successfully"}
    for name in ("worker", "api"):
        deps = depends_on(name)
        assert deps["migrate"] == "service_completed_successfully"
        assert deps[setup_service()] == "service_completed_successfully"


# --- commands -------------------------------------------------------------------------------------


def test_console_script_accounts_is_declared() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "accounts" in pyproject["project"]["scripts"]


@pytest.mark.parametrize(("name", "args"), sorted(APP_SERVICES.items()))
def test_app_services_run_their_accounts_command_from_the_local_build(name: str, args: list[str]) -> None:
    service = SERVICES[name]
    assert "build" in service
    command = service["command"]
    command = command if isinstance(command, list) else command.split()
    assert command == ["accounts", *args]
    assert "entrypoint" not in service


def test_worker_and_api_come_back_after_a_crash_or_reboot() -> None:
    for name in ("worker", "api"):
        assert SERVICES[name].get("restart") in ("unless-stopped", "always")


def test_docker_waits_for_the_worker_to_finish_a_send_before_it_kills_it() -> None:
    """`docker compose stop` sends SIGTERM, then SIGKILL after stop_grace_period (10 s by default)."""
    grace = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(SERVICES["worker"].get("stop_grace_period", "10s")))
    assert grace is not None and any(grace.groups())
    hours, minutes, seconds = (int(part or 0) for part in grace.groups())
    smtp_timeout = environment("worker").get("ACCOUNTS_SMTP_TIMEOUT") or Settings.model_fields["smtp_timeout"].default
    settings = Settings(_env_file=None, smtp_timeout=float(smtp_timeout))  # type: ignore[call-arg]
    assert timedelta(hours=hours, minutes=minutes, seconds=seconds) > graceful_shutdown_timeout(settings)


def test_temporal_schemas_are_created_with_the_sql_tool() -> None:
    text = command_text("temporal-admin-tools")
    assert "temporal-sql-tool --plugin postgres12" in text
    assert "/etc/temporal/schema/postgresql/v12" in text
    for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"--db {database} create" in text
        assert f"--db {database} setup-schema" in text
        assert re.search(rf"--db {database} update-schema -d \S*/{schema}/versioned\b", text)


def setup_service() -> str:
    names = [name for name in SERVICES if "search-attribute create" in command_text(name)]
    assert len(names) == 1, f"expected one service registering search attributes, found {names}"
    return names[0]


def test_setup_registers_the_namespace_and_every_search_attribute_as_keyword() -> None:
    name = setup_service()
    text = command_text(name)
    assert "temporal operator namespace create" in text
    assert "--type Keyword" in text
    for attribute in SEARCH_ATTRIBUTES:
        assert re.search(rf"\b{attribute}\b", text), f"{attribute} is never registered"
    assert depends_on(name).get("temporal") == "service_healthy"
    assert environment(name)["TEMPORAL_NAMESPACE"] == environment("api")["ACCOUNTS_TEMPORAL_NAMESPACE"]


# --- ports ----------------------------------------------------------------------------------------


def test_api_and_temporal_ui_are_published_where_the_readme_says() -> None:
    assert (8000, 8000) in published_ports("api")
    assert (8233, 8080) in published_ports("temporal-ui")
    assert (8025, 8025) in published_ports("mailpit")


def test_no_two_services_publish_the_same_host_port() -> None:
    seen: dict[int, str] = {}
    for name in SERVICES:
        for host, _ in published_ports(name):
            assert host not in seen, f"{name} and {seen[host]} both publish {host}"
            seen[host] = name


# --- the service's settings -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_env_names_only_real_settings(name: str) -> None:
    env = environment(name)
    assert env, f"{name} has no environment"
    unknown = [
        key
        for key in env
        if key.startswith("ACCOUNTS_") and key.removeprefix("ACCOUNTS_").lower() not in Settings.model_fields
    ]
    assert not unknown, f"{name} sets variables no setting reads: {unknown}"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_env_is_accepted_by_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ACCOUNTS_"):
            monkeypatch.delenv(key)
    for key, value in environment(name).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.temporal_target == "temporal:7233"
    assert settings.smtp_target == ("mailpit", 1025)


def test_app_services_share_one_environment() -> None:
    base = environment("migrate")
    assert environment("worker") == base
    assert {key: value for key, value in environment("api").items() if key in base} == base
    assert environment("api")["ACCOUNTS_API_HOST"] == "0.0.0.0"  # noqa: S104


def test_app_database_is_postgres_via_asyncpg_with_the_credentials_postgres_creates() -> None:
    url = urlsplit(environment("api")["ACCOUNTS_DATABASE_URL"] or "")
    assert url.scheme == "postgresql+asyncpg"
    host = url.hostname or ""
    assert host in SERVICES
    assert (expand(SERVICES[host]["image"]) or "").startswith("postgres:")
    database = url.path.lstrip("/")
    init_sql = "\n".join(path.read_text() for path in (ROOT / "deploy" / "postgres-init").iterdir())
    assert re.search(rf"CREATE DATABASE {database}\b", init_sql)
    assert re.search(rf"CREATE ROLE {url.username}\b", init_sql)
    assert url.password == environment(host)["APP_DB_PASSWORD"]


def test_temporal_and_its_schema_job_use_the_password_postgres_creates() -> None:
    password = environment("postgresql")["TEMPORAL_DB_PASSWORD"]
    assert environment("temporal")["POSTGRES_PWD"] == password
    assert environment("temporal-admin-tools")["SQL_PASSWORD"] == password


# --- files the stack reads from the repository ----------------------------------------------------


def test_the_api_and_the_worker_share_the_directory_of_uploaded_imports() -> None:
    """The API stores an uploaded customer.csv under ACCOUNTS_VAR_DIR/imports and the worker reads it there."""
    var_dir = Path(str(environment("worker")["ACCOUNTS_VAR_DIR"]))
    assert environment("api")["ACCOUNTS_VAR_DIR"] == str(var_dir)
    mounts = {}
    for service in ("api", "worker"):
        named = [(expand(e) or "").split(":") for e in SERVICES[service].get("volumes", []) if isinstance(e, str)]
        mounts[service] = {target: source for source, target, *_ in named if not source.startswith((".", "/"))}
    target = str(var_dir / "imports")
    assert target in mounts["api"] and mounts["api"][target] == mounts["worker"].get(target)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_path_exists(name: str) -> None:
    for target, source in bind_mounts(name).items():
        assert source.exists(), f"{name} mounts missing {source.relative_to(ROOT)} at {target}"


def test_every_deploy_path_named_in_the_compose_file_exists() -> None:
    for path in sorted(set(re.findall(r"deploy/[\w./-]+", COMPOSE_FILE.read_text()))):
        assert (ROOT / path.rstrip("/.")).exists(), path


def temporal_dynamic_config() -> dict[str, Any]:
    """The compose Temporal server's dynamic config, read from the repo file its mount puts at its path."""
    config_path = environment("temporal")["DYNAMIC_CONFIG_FILE_PATH"] or ""
    container_path = Path(config_path if config_path.startswith("/") else "/etc/temporal/" + config_path)
    mounts = bind_mounts("temporal")
    hits = [
        host / container_path.relative_to(target)
        for target, host in mounts.items()
        if container_path.is_relative_to(target)
    ]
    assert hits, f"{container_path} is not inside any mount of the temporal service"
    config: dict[str, Any] = yaml.safe_load(hits[0].read_text())
    return config


def test_temporal_dynamic_config_resolves_to_a_file_in_the_repo() -> None:
    config = temporal_dynamic_config()
    assert config and all(
        isinstance(values, list) and all("value" in entry for entry in values) for values in config.values()
    )


def test_temporal_dynamic_config_holds_what_the_service_relies_on() -> None:
    """The compose server completes a stopping worker's polls, as every dev server here does."""
    config = temporal_dynamic_config()
    for key, value in SERVER_DYNAMIC_CONFIG.items():
        assert key in config, f"{key} is missing from the compose server's dynamic config"
        assert [entry["value"] for entry in config[key]] == [yaml.safe_load(value)]


def test_postgres_init_scripts_are_valid_shell() -> None:
    scripts = sorted((ROOT / "deploy" / "postgres-init").glob("*.sh"))
    assert scripts
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_scripts_in_commands_are_valid_shell() -> None:
    checked = 0
    for service in SERVICES.values():
        if (service.get("entrypoint") or [])[:1] == ["/bin/sh"]:
            script = expand("\n".join(service["command"])) or ""
            subprocess.run(["sh", "-n", "-c", script], check=True)
            checked += 1
    assert checked >= 2


def test_every_interpolated_variable_has_a_default_and_shell_variables_are_escaped() -> None:
    text = COMPOSE_FILE.read_text().replace("$$", "")
    for match in INTERPOLATION.finditer(text):
        if match["name"] in REQUIRED:
            assert match["op"] == ":?", f"{match[0]} must fail loudly when unset"
            continue
        assert match["op"] in (":-", "-"), f"{match[0]} has no default: `docker compose up` needs a .env"
    bare = re.findall(r"\$(?!\{)\w+", text)
    assert not bare, f"Compose interpolates {bare} from the host: write $$ for shell variables"


# --- the image ------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_editable_image_that_starts_accounts() -> None:
    instructions = dockerfile_instructions()
    values = {word: [rest for w, rest in instructions if w == word] for word, _ in instructions}
    assert values["FROM"] == ["python:3.11-slim"]
    assert any('pip install -e ".[postgres]"' in run for run in values["RUN"])
    assert "8000" in values["EXPOSE"]
    users = values.get("USER", [])
    assert users and users[-1] not in ("root", "0"), "the service must not run as root"
    start = [rest for word, rest in instructions if word in ("CMD", "ENTRYPOINT")]
    assert start and "accounts" in start[-1]
    assert values["CMD"][-1] == '["accounts", "api"]'


def test_the_image_runs_in_production_unless_told_otherwise() -> None:
    env = " ".join(rest for word, rest in dockerfile_instructions() if word == "ENV")
    assert re.search(r"\bACCOUNTS_ENVIRONMENT=production\b", env)


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch, leave_out: str | None = None) -> Settings:
    """Settings as the service's container reads them: its environment only (none of this shell's)."""
    for key in list(os.environ):
        if key.startswith("ACCOUNTS_"):
            monkeypatch.delenv(key)
    for key, value in environment(service).items():
        if value is not None and key != leave_out:
            monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("required", sorted(REQUIRED))
def test_production_refuses_to_start_without_what_compose_requires(
    required: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=required):
        settings_of("api", monkeypatch, leave_out=required)


def test_the_temporal_ui_decodes_through_the_api_codec_and_may_read_its_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from accounts.temporal import CODEC_PATH

    ui = environment("temporal-ui")
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"] or "")
    assert endpoint.hostname == "localhost" and endpoint.path == CODEC_PATH
    assert (endpoint.port, 8000) in published_ports("api")
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"  # the back-office session cookie goes along
    (ui_port,) = (host for host, container in published_ports("temporal-ui") if container == 8080)
    # CORS lets the UI's page (its published address) read the codec's answers
    assert f"http://localhost:{ui_port}" in settings_of("api", monkeypatch).codec_origins


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (".venv", "var", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert entry in ignored
