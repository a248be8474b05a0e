"""`accounts db upgrade`: Alembic migrations, run against whatever database URL the settings name."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config

from accounts.settings import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py drives its own event loop, so it runs on a thread when the caller already has one.
    await asyncio.to_thread(upgrade, database_url, revision)
