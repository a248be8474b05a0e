"""The FastAPI application: built by create_app(settings), connected to Temporal in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp
from temporalio.client import Client

from accounts.access_tokens import AGENT_AUDIENCE, AccessTokenIssuer
from accounts.customer_sessions import warm_up as warm_up_device_names
from accounts.db import service_engine, session_factory
from accounts.emails import EmailRenderer
from accounts.health import database_check, temporal_check
from accounts.metrics import registry
from accounts.mfa import MfaPolicy
from accounts.ops_server import serving
from accounts.rate_limits import RequestLimits
from accounts.refresh_tokens import RefreshTokenStore
from accounts.settings import Settings
from accounts.staff import StaffDirectory
from accounts.temporal import connect
from accounts.tracing import Tracing
from api import jsonapi, web
from api.client_address import ForwardedForCheck
from api.guard import RequestGuard
from api.headers import SecurityHeaders
from api.middleware import BodySizeLimit, PathCheck, install_log_redaction
from api.observability import RequestMetrics
from api.refusals import RefuseRemembered, install_quiet_refusals
from api.routes import (
    access_tokens,
    addresses,
    agents,
    backoffice,
    carts,
    codec,
    confirmation,
    customer_sessions,
    customers,
    data_exports,
    health,
    mfa,
    not_me,
    orders,
    passwords,
    unlock,
)
from starter import AccountsClient


class AccountsAPI(FastAPI):
    """FastAPI with one thing around its whole stack: a sign-in the database refused a moment ago is
    answered from memory (api/refusals.py) before any middleware, Starlette's own included, or parsing."""

    max_request_bytes: int = 0
    request_timeout: float = 10.0

    def build_middleware_stack(self) -> ASGIApp:
        inside = super().build_middleware_stack()
        return RefuseRemembered(inside, self, self.max_request_bytes, self.request_timeout)


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
        warm_up_device_names()  # ua-parser compiles its rules once, here rather than in a sign-in
        app.state.renderer = EmailRenderer(settings.templates_dir, default_locale=settings.default_locale)
        app.state.issuer = AccessTokenIssuer.from_settings(settings)
        # agents' own tokens: the same key, another audience (no customer route takes one, nor the reverse)
        app.state.agent_issuer = AccessTokenIssuer(
            app.state.issuer.key,
            issuer=settings.jwt_issuer,
            lifetime=settings.access_token_lifetime,
            audience=AGENT_AUDIENCE,
        )
        app.state.refresh_tokens = RefreshTokenStore.from_settings(settings, app.state.sessions)
        app.state.staff = StaffDirectory.from_settings(app.state.sessions, settings)
        app.state.mfa_policy = MfaPolicy.from_settings(settings)
        tracing = Tracing(settings, service="shop-accounts-api")  # off unless ACCOUNTS_TRACING_OTLP_ENDPOINT
        client = temporal_client or await connect(settings, interceptors=tracing.interceptors)
        app.state.engine, app.state.temporal = engine, client  # what /health/ready checks
        app.state.accounts = AccountsClient(client, settings, app.state.sessions)
        app.state.payload_codec = client.data_converter.payload_codec  # the codec endpoints use the client's own
        app.state.web = web.WebUI(settings, app.state.sessions, app.state.staff, app.state.accounts)
        install_log_redaction()
        install_quiet_refusals()
        try:
            async with AsyncExitStack() as stack:
                if settings.api_metrics_port is not None:  # /metrics on a listener of its own
                    checks = {"database": database_check(engine), "temporal": temporal_check(client)}
                    app.state.ops = await stack.enter_async_context(
                        serving("api", settings.metrics_host, settings.api_metrics_port, registry(), checks)
                    )
                yield
        finally:
            tracing.shutdown()
            await app.state.limits.close()
            if given_engine is None:  # a handed-in engine belongs to whoever made it
                await engine.dispose()

    app = AccountsAPI(
        title="Shop accounts",
        version="0.1.0",
        description="Customer accounts with double opt-in, Spryker Glue compatible.",
        lifespan=lifespan,
    )
    app.max_request_bytes = settings.max_request_bytes
    app.request_timeout = settings.request_timeout.total_seconds()
    uploads = dict.fromkeys(("/backoffice/imports", web.IMPORT_UPLOAD_PATH), settings.import_max_bytes)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes, uploads=uploads)
    app.add_middleware(PathCheck)
    app.add_middleware(ForwardedForCheck, forwarded_allow_ips=settings.forwarded_allow_ips)
    # outermost (added last): its deadline, request id and error answers cover everything inside it,
    # including Temporal (RPCError) and database outages, which answer 503 there
    app.add_middleware(RequestGuard, timeout=settings.request_timeout)
    # around the guard: its 503s and 500s are counted too, by route template (api/observability.py)
    app.add_middleware(RequestMetrics, routes=app.router.routes)
    # around the guard, so that its own answers (503, 500) carry them too
    app.add_middleware(SecurityHeaders, docs_paths=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url))
    # outermost: a change an agent made for a customer reaches its assistance session after the answer
    app.add_middleware(agents.RecordAssistActions, timeout=settings.request_timeout.total_seconds())

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

    app.include_router(health.router)  # /health, /health/live, /health/ready
    app.include_router(customers.router)
    app.include_router(addresses.router)
    app.include_router(customer_sessions.router)
    app.include_router(data_exports.router)
    app.include_router(confirmation.router)
    app.include_router(access_tokens.router)
    app.include_router(agents.router)
    app.include_router(unlock.router)
    app.include_router(not_me.router)
    app.include_router(passwords.router)
    app.include_router(mfa.router)
    app.include_router(backoffice.router)
    app.include_router(orders.router)
    for router in web.routers:  # the back-office web UI (HTML)
        app.include_router(router)
    app.include_router(carts.router)
    app.include_router(codec.router)  # the Temporal UI's and CLI's codec server (/backoffice/codec)
    return app
