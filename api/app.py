"""The FastAPI application: built by create_app(settings), connected to Temporal in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from accounts.access_tokens import AccessTokenIssuer
from accounts.db import service_engine, session_factory
from accounts.emails import EmailRenderer
from accounts.rate_limits import RequestLimits
from accounts.refresh_tokens import RefreshTokenStore
from accounts.settings import Settings
from accounts.staff import StaffDirectory
from accounts.temporal import connect
from api import jsonapi, web
from api.client_address import ForwardedForCheck
from api.guard import RequestGuard
from api.headers import SecurityHeaders
from api.middleware import BodySizeLimit, install_log_redaction
from api.refusals import RefuseRemembered
from api.routes import access_tokens, addresses, backoffice, carts, confirmation, customers, orders, passwords, unlock
from starter import AccountsClient


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None, engine: AsyncEngine | None = None
) -> FastAPI:
    """The app; tests hand in a Temporal client (and may hand in the database engine, to watch its
    statements), production connects with the settings."""
    settings = settings or Settings()
    given_engine = engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = given_engine or service_engine(settings)
        app.state.settings = settings
        app.state.sessions = session_factory(engine)
        app.state.limits = RequestLimits(settings, app.state.sessions)
        app.state.renderer = EmailRenderer(settings.templates_dir, default_locale=settings.default_locale)
        app.state.issuer = AccessTokenIssuer.from_settings(settings)
        app.state.refresh_tokens = RefreshTokenStore.from_settings(settings, app.state.sessions)
        app.state.staff = StaffDirectory.from_settings(app.state.sessions, settings)
        client = temporal_client or await connect(settings)
        app.state.accounts = AccountsClient(client, settings, app.state.sessions)
        app.state.web = web.WebUI(settings, app.state.sessions, app.state.staff, app.state.accounts)
        install_log_redaction()
        try:
            yield
        finally:
            await app.state.limits.close()
            if given_engine is None:  # a handed-in engine belongs to whoever made it
                await engine.dispose()

    app = FastAPI(
        title="Shop accounts",
        version="0.1.0",
        description="Customer accounts with double opt-in, Spryker Glue compatible.",
        lifespan=lifespan,
    )
    uploads = dict.fromkeys(("/backoffice/imports", web.IMPORT_UPLOAD_PATH), settings.import_max_bytes)
    # innermost: a sign-in the database refused a moment ago is answered before the framework parses it
    app.add_middleware(RefuseRemembered)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes, uploads=uploads)
    app.add_middleware(ForwardedForCheck, forwarded_allow_ips=settings.forwarded_allow_ips)
    # outermost (added last): its deadline, request id and error answers cover everything inside it,
    # including Temporal (RPCError) and database outages, which answer 503 there
    app.add_middleware(RequestGuard, timeout=settings.request_timeout)
    # around the guard, so that its own answers (503, 500) carry them too
    app.add_middleware(SecurityHeaders, docs_paths=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url))

    @app.exception_handler(RequestValidationError)
    async def _schema_violation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return jsonapi.errors_response(jsonapi.schema_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return jsonapi.errors_response([jsonapi.GlueError(exc.status_code, str(exc.status_code), detail)])

    @app.exception_handler(jsonapi.GlueException)
    async def _glue_error(_: Request, exc: jsonapi.GlueException) -> JSONResponse:
        return jsonapi.errors_response(exc.errors, exc.headers)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(customers.router)
    app.include_router(addresses.router)
    app.include_router(confirmation.router)
    app.include_router(access_tokens.router)
    app.include_router(unlock.router)
    app.include_router(passwords.router)
    app.include_router(backoffice.router)
    app.include_router(orders.router)
    for router in web.routers:  # the back-office web UI (HTML)
        app.include_router(router)
    app.include_router(carts.router)
    return app
