"""FastAPI dependencies, as Annotated aliases; everything comes from the app state built in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from accounts.db import SessionFactory
from accounts.emails import EmailRenderer
from accounts.mfa_secrets import SecretBox
from accounts.settings import Settings
from starter import AccountsClient


def _accounts(request: Request) -> AccountsClient:
    return request.app.state.accounts


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _renderer(request: Request) -> EmailRenderer:
    return request.app.state.renderer


def _secret_box(request: Request) -> SecretBox:
    return request.app.state.mfa_policy.box  # the key of secrets at rest (accounts/mfa_secrets.py)


def _sessions(request: Request) -> SessionFactory:
    return request.app.state.sessions


Accounts = Annotated[AccountsClient, Depends(_accounts)]
SettingsDep = Annotated[Settings, Depends(_settings)]
Renderer = Annotated[EmailRenderer, Depends(_renderer)]
Sessions = Annotated[SessionFactory, Depends(_sessions)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
