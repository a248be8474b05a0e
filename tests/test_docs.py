"""The docs name what the code has: every setting documented once, no setting that is gone, no dead link."""

from __future__ import annotations

import re
from pathlib import Path

from accounts.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"
ENV_NAME = re.compile(r"\bACCOUNTS_[A-Z0-9_]*[A-Z0-9]\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "ACCOUNTS_"
    return {prefix + name.upper() for name in Settings.model_fields}


def documented_rows(text: str) -> list[str]:
    """The variable named in the first cell of each row of the settings tables."""
    rows = []
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            rows.extend(ENV_NAME.findall(cells[1]))
    return rows


def test_every_setting_has_one_row_in_configuration_md() -> None:
    rows = documented_rows(CONFIGURATION.read_text())
    missing = sorted(env_names() - set(rows))
    twice = sorted({name for name in rows if rows.count(name) > 1})
    assert not missing, f"settings without a row in docs/configuration.md: {missing}"
    assert not twice, f"settings with more than one row in docs/configuration.md: {twice}"


def test_configuration_md_names_no_setting_that_does_not_exist() -> None:
    named = set(ENV_NAME.findall(CONFIGURATION.read_text()))
    unknown = sorted(named - env_names())
    assert not unknown, f"docs/configuration.md names variables that are no Settings field: {unknown}"


def test_relative_links_in_readme_and_docs_point_at_files() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    dead = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if target.startswith("#"):
                target = page.name + target
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve()
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert not dead, f"links to files or headings that do not exist: {dead}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
