"""Prometheus metrics (prometheus_client): what happens to customers, HTTP requests, and Temporal's own.

Every counter lives in prometheus_client's process-wide registry and is counted where the thing happens:
registrations started and sign-ins in the API process (the client library, `starter/`), verified and
expired registrations, emails and import rows in the worker's activities. Each process serves what it
counted on its own `/metrics` listener (`accounts/ops_server.py`; ACCOUNTS_API_METRICS_PORT,
ACCOUNTS_WORKER_METRICS_PORT). Labels are bounded sets (an outcome, a template, a route template, a status),
never a reference, an address or a raw path. Counts are at least once: an activity retried after its work
committed but before it reported may count that work again.

Hot paths increment a pre-bound child (`SIGN_INS_BLOCKED.inc()`): a lock and an add, well under a microsecond.

Temporal's SDK metrics (task slots, poll and schedule-to-start latencies, workflow and activity outcomes)
come from the worker's runtime telemetry: `TemporalSdkMetrics` gives the runtime a MetricBuffer and turns
its updates into families of the same registry's exposition, so one scrape of the worker has both.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
)

disable_created_metrics()  # no `_created` series beside every counter: nothing here reads them

# --- what happens to customers --------------------------------------------------------------------------

REGISTRATIONS = Counter(
    "accounts_registrations",
    "Registration lifecycles: started (a sign-up accepted, API or back office), verified (link, support or a"
    " reset link activated the account), expired (unverified at its deadline).",
    ["event"],
)
REGISTRATIONS_STARTED = REGISTRATIONS.labels("started")
REGISTRATIONS_VERIFIED = REGISTRATIONS.labels("verified")
REGISTRATIONS_EXPIRED = REGISTRATIONS.labels("expired")

SIGN_INS = Counter(
    "accounts_sign_ins",
    "Customer sign-in attempts: succeeded, failed (wrong password, unknown or unverified account, a forced"
    " reset), blocked (refused by the lockout without checking the password, from the database or memory),"
    " second_factor_refused (the right password, then no or a wrong MFA code: ACCOUNTS_MFA_AT_SIGN_IN).",
    ["outcome"],
)
SIGN_INS_SUCCEEDED = SIGN_INS.labels("succeeded")
SIGN_INS_FAILED = SIGN_INS.labels("failed")
SIGN_INS_BLOCKED = SIGN_INS.labels("blocked")
SIGN_INS_SECOND_FACTOR_REFUSED = SIGN_INS.labels("second_factor_refused")

EMAILS = Counter(
    "accounts_emails",
    "Email sends by template: sent (handed to SMTP), bounced (refused for good, 5xx), retried (a temporary"
    " failure: the activity tries again).",
    ["template", "outcome"],
)

IMPORT_ROWS = Counter(
    "accounts_import_rows",
    "Rows of customer imports written (created, updated, unchanged) or rejected; dry runs are not counted.",
    ["outcome"],
)


def email_sent(template: str) -> None:
    EMAILS.labels(template, "sent").inc()


def email_bounced(template: str) -> None:
    EMAILS.labels(template, "bounced").inc()


def email_retried(template: str) -> None:
    EMAILS.labels(template, "retried").inc()


# --- HTTP (the API process) ---------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "accounts_http_requests",
    "HTTP requests answered, by method, route template (e.g. /customers/{customer_reference}) and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "accounts_http_request_duration_seconds",
    "Time until the response started, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UNMATCHED_ROUTE = "unmatched"  # no route (a 404, or an answer from a middleware before routing)


# --- Temporal's SDK metrics -----------------------------------------------------------------------------

# seconds (the buffer's duration format): schedule-to-start, poll, execution latencies
SDK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
Labels = tuple[tuple[str, str], ...]
LABEL_CACHE_SIZE = 10_000


@dataclass
class _Series:
    kind: str  # counter, gauge, histogram
    documentation: str
    values: dict[Labels, float] = field(default_factory=dict)  # counters, gauges
    buckets: dict[Labels, list[float]] = field(default_factory=dict)  # histograms: counts per bucket, then sum


class TemporalSdkMetrics(Collector):
    """A metric buffer for a Temporal runtime's telemetry (`TelemetryConfig(metrics=...buffer)`), and the
    collector that drains it: counters add up their deltas, gauges keep the last value, histograms count
    into SDK_BUCKETS. The buffer must be drained regularly (a scrape does, and `drain` from the worker's
    loop every second); a full buffer drops updates and Temporal logs an error."""

    def __init__(self, buffer_size: int = 100_000) -> None:
        self.buffer = MetricBuffer(buffer_size, MetricBufferDurationFormat.SECONDS)
        self._lock = threading.Lock()  # a scrape's thread and the loop's drain
        self._series: dict[str, _Series] = {}
        # the SDK hands the same attributes object for the same attribute set: its labels are sorted once
        # (the object is kept, so its id cannot be reused by another)
        self._labels: dict[int, tuple[object, Labels]] = {}

    def drain(self) -> None:
        with self._lock:
            try:
                updates = self.buffer.retrieve_updates()
            except RuntimeError:  # no runtime was made with this buffer (yet): nothing to drain
                return
            for update in updates:
                self._apply(update)

    def _apply(self, update: BufferedMetricUpdate) -> None:
        metric = update.metric
        series = self._series.get(metric.name.removesuffix("_total"))
        if series is None:
            kind = (
                "counter"
                if metric.kind == BUFFERED_METRIC_KIND_COUNTER
                else "histogram"
                if metric.kind == BUFFERED_METRIC_KIND_HISTOGRAM
                else "gauge"
            )
            series = self._series[metric.name.removesuffix("_total")] = _Series(kind, metric.description or metric.name)
        attributes = update.attributes
        cached = self._labels.get(id(attributes))
        if cached is not None and cached[0] is attributes:
            labels = cached[1]
        else:
            labels = tuple(sorted((str(k), str(v)) for k, v in attributes.items()))
            if len(self._labels) >= LABEL_CACHE_SIZE:  # attribute sets made afresh each time: start over
                self._labels.clear()
            self._labels[id(attributes)] = (attributes, labels)
        if series.kind == "counter":
            series.values[labels] = series.values.get(labels, 0.0) + update.value
        elif series.kind == "gauge":
            series.values[labels] = float(update.value)
        else:
            counts = series.buckets.setdefault(labels, [0.0] * (len(SDK_BUCKETS) + 2))
            counts[bisect.bisect_left(SDK_BUCKETS, update.value)] += 1  # the last slot before the sum is +Inf
            counts[-1] += update.value

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, series in sorted(self._series.items()):
                family = Metric(name, series.documentation, series.kind)
                if series.kind == "counter":
                    for labels, value in series.values.items():
                        family.add_sample(f"{name}_total", dict(labels), value)
                elif series.kind == "gauge":
                    for labels, value in series.values.items():
                        family.add_sample(name, dict(labels), value)
                else:
                    for labels, counts in series.buckets.items():
                        cumulative = 0.0
                        for bound, count in zip((*SDK_BUCKETS, float("inf")), counts, strict=False):
                            cumulative += count
                            le = "+Inf" if bound == float("inf") else repr(bound)
                            family.add_sample(f"{name}_bucket", {**dict(labels), "le": le}, cumulative)
                        family.add_sample(f"{name}_count", dict(labels), cumulative)
                        family.add_sample(f"{name}_sum", dict(labels), counts[-1])
                yield family


class _Together(Collector):
    def __init__(self, sources: Iterable[CollectorRegistry | Collector]) -> None:
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


def registry(*extra: Collector) -> CollectorRegistry:
    """What one process's /metrics shows: the process-wide counters and, in the worker, Temporal's."""
    together = CollectorRegistry(auto_describe=False)
    together.register(_Together([REGISTRY, *extra]))
    return together
