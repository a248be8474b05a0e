"""Running the service: `accounts dev|worker|api`, `accounts db upgrade`, `accounts jwt-key`, `accounts payload-key`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from accounts.settings import Settings
from cli.output import console, echo_unwrapped

app = typer.Typer()
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def dev() -> None:
    """Start the whole stack: Temporal dev server, SMTP sink, migrations, worker and API."""
    from accounts.logs import configure_logging
    from devstack.dev import run_dev

    settings = Settings()
    # quiet by default beside the stack's own summary lines; ACCOUNTS_LOG_LEVEL says otherwise
    configure_logging(
        settings.log_format, settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    )
    asyncio.run(run_dev(settings, echo=echo_unwrapped))


@app.command()
def worker() -> None:
    """Run a Temporal worker for every lifecycle (same as `python worker.py`)."""
    import worker as worker_module

    asyncio.run(worker_module.main())


@app.command()
def api() -> None:
    """Serve the HTTP API on ACCOUNTS_API_HOST:ACCOUNTS_API_PORT."""
    from accounts.logs import configure_logging
    from accounts.temporal import connect_options
    from api.serving import serve

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    connect_options(settings)  # a wrong TLS file or key is one line here, not a traceback from the app's startup
    serve(settings)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the database migrations."""
    from accounts.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at {revision}")


@app.command("jwt-key")
def jwt_key(path: Path) -> None:
    """Create the RS256 key that signs access tokens at PATH, unless it exists (idempotent)."""
    from accounts.access_tokens import SigningKey

    key = SigningKey.load_or_create(path)
    console.print(f"signing key {key.kid} at {path}")


@app.command("payload-key")
def payload_key() -> None:
    """Print a new payload encryption key (base64 of 32 random bytes) and its key id.

    Put it into ACCOUNTS_PAYLOAD_ENCRYPTION_KEY; on a rotation the old key moves to
    ACCOUNTS_PAYLOAD_DECRYPTION_KEYS (docs/operations.md)."""
    import base64
    import os

    from accounts.temporal import key_id

    raw = os.urandom(32)
    typer.echo(base64.b64encode(raw).decode("ascii"))
    typer.echo(f"key id {key_id(raw)}", err=True)  # stderr: `KEY=$(accounts payload-key)` takes the key alone
