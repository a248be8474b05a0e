"""Optional OpenTelemetry tracing through Temporal's tracing interceptor, on when an endpoint is set.

With ACCOUNTS_TRACING_OTLP_ENDPOINT unset, `Tracing(settings).interceptors` is empty and nothing of
OpenTelemetry's SDK or Temporal's contrib module is imported. Set, the client's interceptor
(`temporalio.contrib.opentelemetry.TracingInterceptor`) creates spans for every workflow start, update,
signal and query the client sends, and, since workers take the interceptors of their client, for every
workflow and activity the worker runs; they are batched to the OTLP/HTTP endpoint. A test hands in its own
span exporter (an in-memory one) through the constructor. The tracer provider is this object's own, not
OpenTelemetry's global one, so two in one process (the API and the worker of `accounts dev`) do not clash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accounts.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.client import Interceptor


class Tracing:
    def __init__(self, settings: Settings, *, service: str = "shop-accounts", exporter: SpanExporter | None = None):
        self._provider: TracerProvider | None = None
        self.interceptors: list[Interceptor] = []
        if exporter is None and settings.tracing_otlp_endpoint is None:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint)
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self.interceptors = [TracingInterceptor(self._provider.get_tracer("accounts"))]

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def flush(self, timeout_millis: int = 5000) -> bool:
        return self._provider.force_flush(timeout_millis) if self._provider is not None else True

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
