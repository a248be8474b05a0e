"""One Settings object, read from ACCOUNTS_* environment variables in the composition roots and passed down.

Workflows never read it: the timings they need travel in their input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr, TypeAdapter, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from accounts.task_queues import KINDS, SUFFIXES, QueueKind

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_SECRET = "development-only-not-secret"  # noqa: S105


class ConfigurationError(Exception):
    """A setting names something unusable (a file that is missing or holds no key): the message is one
    line naming the setting, which the `accounts` command prints instead of a traceback."""


def _seconds_or_iso(value: Any) -> Any:
    """Durations are ISO 8601 (``PT24H``) or plain seconds (``86400``)."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]

_YEARS_MONTHS = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?=\d|T|$)(.*)", re.IGNORECASE)


def _months_or_iso(value: Any) -> Any:
    """A Duration that may also count years and months, as ISO 8601 writes them (``P23M``, ``P1Y11M``,
    ``P1Y6M15D``): a year is 365 days and a month 30 (P23M is 690 days). Unset or empty: None (off)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        match = _YEARS_MONTHS.fullmatch(text)
        if match and (match[1] or match[2]):
            days = int(match[1] or 0) * 365 + int(match[2] or 0) * 30
            rest = match[3]  # the weeks, days and time that follow, as ISO 8601 of its own
            return timedelta(days=days) + (TypeAdapter(timedelta).validate_python(f"P{rest}") if rest else timedelta(0))
    return _seconds_or_iso(value)


LongDuration = Annotated[timedelta | None, BeforeValidator(_months_or_iso)]


def is_payload_key(value: str) -> bool:
    """Whether a setting's value is a payload key: base64 of exactly 32 bytes (AES-256)."""
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _refuse_below(minimum: int, allowed: str, **settings: int) -> None:
    """Refuse the first of these settings (named as in the environment) under `minimum`, naming it."""
    for name, value in settings.items():
        if value < minimum:
            raise ValueError(f"{name} must be {allowed}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")

    # database
    database_url: str = "sqlite+aiosqlite:///var/accounts.db"
    # each process's connection pool (SQLAlchemy's defaults): a worker's activity slots must fit in it
    database_pool_size: int = 5
    database_max_overflow: int = 10

    # Temporal: unset means "localhost:7233", and `accounts dev` starts its own dev server there
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "accounts"  # the lifecycles' queue; the others are named after it (accounts/task_queues.py)
    # the queues this process's worker polls (all by default: one `accounts worker` serves a shop)
    worker_task_queues: list[QueueKind] = list(KINDS)
    # activities a worker runs at once per queue; together (of the queues it polls) at most the pool's connections
    lifecycle_activity_slots: int = 6
    signin_activity_slots: int = 2
    email_activity_slots: int = 4
    bulk_email_activity_slots: int = 2
    # workflow runs a worker process keeps in memory between their tasks (Temporal's sticky cache); the
    # others wait in their history and are replayed when their next event comes (docs/capacity.md)
    worker_max_cached_workflows: int = 250
    # Temporal's task-queue rate limit of the two email queues, for the whole shop (every worker sets the
    # same): together at most the SMTP provider's sending rate
    email_sends_per_second: float = 10.0
    bulk_email_sends_per_second: float = 4.0
    temporal_ui_url: str = "http://localhost:8233"
    # a real cluster (Temporal Cloud, a self-hosted one behind mTLS): an API key, or a client certificate
    # and its key (PEM files). TLS: unset means on when any of the others is set; true or false decides
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_ca: Path | None = None  # PEM; unset: the system's trusted roots
    temporal_tls_server_name: str | None = None  # the name the server's certificate carries, when not the address's

    # payloads (inputs, results, signals, queries, failures) are AES-GCM encrypted in Temporal: with this
    # key (base64 of 32 random bytes; `accounts payload-key` makes one), or in development without it with
    # one generated under var/ (var/payload-key). Production refuses to start without it.
    payload_encryption_key: SecretStr | None = None
    # earlier keys, still read (never written): a key rotation moves the old key here. Comma-separated.
    payload_decryption_keys: Annotated[list[SecretStr], NoDecode] = []
    # development only (production refuses false): payloads in plain text, e.g. for recorded test histories
    payload_encryption: bool = True
    # origins whose pages may call the codec endpoints (/backoffice/codec/...) from a browser: the Temporal
    # UI's. Comma-separated; unset: the origin of ACCOUNTS_TEMPORAL_UI_URL
    codec_cors_origins: Annotated[list[str], NoDecode] = []

    # email: unset host means "127.0.0.1:1025", and `accounts dev` starts its own sink there
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout: float = 30.0
    mail_from: str = "Shop <no-reply@shop.example>"
    shop_name: str = "Shop"

    # ports of what `accounts dev` starts itself
    dev_temporal_port: int = 7233
    dev_ui_port: int = 8233
    dev_smtp_port: int = 1025

    # HTTP
    public_url: str = "http://localhost:8000"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_request_bytes: int = 2 * 1024 * 1024
    # a customer.csv upload (POST /backoffice/imports, the web upload page): bigger than any other body
    import_max_bytes: int = 64 * 1024 * 1024
    # the longest any request waits (for a workflow's update, the database) before it answers 503:
    # an outage must not hang clients; the lifecycle a request started goes on without it
    request_timeout: Duration = timedelta(seconds=10)
    # proxies trusted to name the client address (X-Forwarded-For): the per-IP lockout needs the real
    # address; behind a proxy that is not listed here, every customer would share the proxy's address
    forwarded_allow_ips: str = "127.0.0.1"
    # per-IP counting (rate limits, lockout windows) groups IPv6 clients by this prefix: one subscriber
    # usually holds a whole /64 and could otherwise take a fresh address for every request
    client_ipv6_prefix: int = 64

    # request budgets of unauthenticated work (sign-up, forgotten password, sign-in, email change,
    # verification resends, staff sign-in): per client address and for everyone together, each kind
    # of request counted apart in the database; beyond them 429 with Retry-After. 0 turns one off.
    rate_limit_window: Duration = timedelta(seconds=60)
    rate_limit_per_ip: int = 30
    rate_limit_global: int = 6000
    # per address typed into a sign-up or a "forgot password" (counted whether or not it has an account):
    # the requests per hour that may reach a workflow, so no flood grows a history or an inbox
    address_requests_per_hour: int = 5
    # redis://host:6379/0: keep these counters in Redis instead of the database (needs the `redis` extra)
    rate_limit_redis_url: str | None = None
    # what deletes expired rows of the throttle tables (a Temporal Schedule the worker creates)
    throttle_cleanup_interval: Duration = timedelta(hours=1)
    throttle_retention: Duration = timedelta(days=1)
    # a password hash waiting for the activity that applies it (accounts/pending_credentials.py): one not
    # applied within this time is abandoned and deleted by the same Schedule
    pending_credential_lifetime: Duration = timedelta(days=1)

    # seeing inside (docs/operations.md#metrics-health-and-logs): unset ports serve nothing
    log_format: Literal["text", "json"] = "text"  # json: one JSON object a line, with request or workflow id
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_host: str = "127.0.0.1"  # where the two ports below listen (0.0.0.0 in a container)
    api_metrics_port: int | None = None  # the API process's /metrics (its own listener, not the public port)
    worker_metrics_port: int | None = None  # the worker's /metrics (its own and Temporal's), /health/live, /ready
    # OpenTelemetry traces through Temporal's tracing interceptor, exported by OTLP/HTTP to this URL
    # (e.g. http://collector:4318/v1/traces); unset: no tracing, nothing of OpenTelemetry's SDK is loaded
    tracing_otlp_endpoint: str | None = None

    # customers
    customer_reference_prefix: str = "DE--"
    default_locale: str = "en_US"
    locales: list[str] = ["en_US", "de_DE"]

    # registration lifecycle
    verification_reminder_after: Duration = timedelta(hours=24)
    verification_expires_after: Duration = timedelta(hours=72)
    unverified_action: Literal["keep", "anonymize"] = "keep"
    verification_resend_min_interval: Duration = timedelta(minutes=1)
    verification_resend_max: int = 5
    already_registered_notice_interval: Duration = timedelta(hours=1)
    # Spryker's answer to a taken address (422, code 400) tells anyone whether an address has an account;
    # false answers 201 as for a new one (with a reference that names nobody), only the owner's email differs
    registration_reveals_accounts: bool = True
    # customer import: the registrations (verification emails) of imported unverified customers start
    # at most this many per second, so a large file never floods the SMTP server
    import_emails_per_second: float = 10.0
    import_batch_size: int = 2000  # rows per batch: one activity, one transaction (docs/performance.md)
    import_concurrent_batches: int = 2  # batch activities of one import at once (one parses, one writes)

    # inactive accounts (accounts/inactivity.py): customers who have not signed in for REMIND_AFTER get a
    # reminder, a last warning at WARN_AFTER and are retired at RETIRE_AFTER (ACTION: anonymize through the
    # deletion lifecycle, or keep). Each a Duration or ISO 8601 with years and months (P23M); the reminder
    # unset (the default) turns the feature off: no sweep is scheduled
    inactive_remind_after: LongDuration = None
    inactive_warn_after: LongDuration = None
    inactive_retire_after: LongDuration = None
    inactive_action: Literal["anonymize", "keep"] = "anonymize"
    # orders in these statuses are open: their customers are never reminded nor retired. Comma-separated
    inactive_open_order_statuses: Annotated[list[str], NoDecode] = [
        "new",
        "payment pending",
        "confirmed",
        "exported",
        "shipped",
    ]
    inactive_sweep_interval: Duration = timedelta(days=1)  # how often the Schedule runs the sweep
    inactive_sweep_page_size: int = 500  # customers per page (one query, one activity)

    # password policy (Spryker's knobs, plus the offline common-password and similarity checks)
    password_min_length: int = 12
    password_max_length: int = 128
    password_require_character_set: bool = False
    # Spryker's sequence limit: this many identical characters in a row are refused (3 refuses "eee"); 0 is off
    password_max_repeated_characters: int = 3
    password_deny_list: list[str] = []
    password_check_common: bool = True
    password_check_similarity: bool = True

    # password reset
    password_reset_expires_after: Duration = timedelta(hours=2)
    password_reset_resend_min_interval: Duration = timedelta(minutes=1)
    password_reset_resends_per_hour: int = 5
    password_reset_history_limit: int = 1000  # events before a reset that keeps being asked for continues as new

    # email change: how long the confirmation link sent to the new address works
    email_change_expires_after: Duration = timedelta(hours=24)
    # each request emails an address the customer typed: a bound per customer and hour
    email_change_requests_per_hour: int = 5
    # how long the link in the notice to the OLD address undoes a confirmed change (and ends every session)
    email_change_undo_lifetime: Duration = timedelta(days=7)

    # login: access tokens (RS256 JWT) and refresh tokens
    # signs the keyed hash of client IPs (lockout-ip:{hash}); production refuses the placeholder
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    jwt_private_key_path: Path | None = None  # PEM; unset: generated under var/ on first use
    jwt_issuer: str = "shop-accounts"
    access_token_lifetime: Duration = timedelta(hours=8)
    refresh_token_lifetime: Duration = timedelta(days=30)
    # back-office web UI: a staff member's signed session cookie expires this long after sign-in
    backoffice_session_hours: float = 8.0

    # lockout windows (defaults: Spryker's recommended 9 failures in 900 s block for 360 s)
    lockout_max_failures: int = 9
    lockout_window: Duration = timedelta(seconds=900)
    lockout_duration: Duration = timedelta(seconds=360)
    lockout_escalation_factor: float = 2.0
    lockout_max_duration: Duration = timedelta(hours=24)
    lockout_escalation_period: Duration = timedelta(hours=24)
    lockout_history_limit: int = 2000  # events before a lockout window continues as new
    lockout_ip_max_failures: int = 100
    lockout_ip_window: Duration = timedelta(seconds=900)
    lockout_ip_duration: Duration = timedelta(seconds=360)
    # device tokens (accounts/device_tokens.py): a known device's failures are bounded per token, apart
    # from the account's, in the account's window, locked for the account's lock duration
    lockout_device_max_failures: int = 9
    # an API process answers a subject the database refused from memory for at most this long
    # (accounts/refusals.py): a lock lifted meanwhile is honoured this much later; 0 turns it off
    lockout_refusal_memory: Duration = timedelta(seconds=2)
    device_token_lifetime: Duration = timedelta(days=90)
    device_tokens_per_account: int = 10
    # the one-time link in the lock email: it trusts the browser that opens it
    unlock_link_expires_after: Duration = timedelta(hours=24)
    # a sign-in from a device the customer has not signed in from emails them (accounts/customer_sessions.py),
    # with a "this wasn't me" link that ends every session and works this long
    new_device_alerts: bool = True
    not_me_link_expires_after: Duration = timedelta(days=7)
    # the customer's copy of their data (workflows/data_export.py): a customer asks at most once per
    # min_interval; the archive and its download link die expires_after after the request
    data_export_min_interval: Duration = timedelta(days=1)
    data_export_expires_after: Duration = timedelta(days=7)

    # multi-factor authentication (accounts/mfa.py; Glue's /multi-factor-auth-* resources). The types a
    # customer may activate, comma-separated: email (a code by email), totp (an authenticator app)
    mfa_types: Annotated[list[str], NoDecode] = ["email", "totp"]
    # Glue resources whose POST, PATCH and DELETE need X-MFA-Code once a customer has an active method
    # (GET never does); the default is Spryker's demo shop's list. Comma-separated; empty: none
    mfa_protected_requests: Annotated[list[str], NoDecode] = [
        "customer-password",
        "customers",
        "addresses",
        "carts",
        "checkout",
        "order-payments",
        "data-exports",  # this service's: a copy of everything it holds on the customer
    ]
    # true: POST /access-tokens (and /token) of a customer with an active method needs X-MFA-Code too
    mfa_at_sign_in: bool = False
    mfa_code_expires_after: Duration = timedelta(minutes=30)  # an emailed code (Spryker: 30 minutes)
    mfa_code_attempts: int = 3  # tries per emailed code, and per lock period for TOTP and recovery codes
    mfa_code_resend_min_interval: Duration = timedelta(seconds=30)  # a code asked for sooner is not sent again
    mfa_codes_per_hour: int = 10  # emailed codes per customer and hour: with 3 tries each, bounds guessing
    mfa_lock_duration: Duration = timedelta(minutes=15)  # TOTP/recovery codes after mfa_code_attempts failures
    # an activation not verified within this is dropped (its type answers "deactivated" again)
    mfa_activation_expires_after: Duration = timedelta(hours=1)
    # TOTP secrets are AES-256-GCM encrypted at rest with this key (base64 of 32 bytes: `accounts
    # payload-key` makes one); development without it uses var/mfa-key. Production refuses to start without it.
    mfa_encryption_key: SecretStr | None = None
    # true: staff sign in to the back office with a TOTP code too (`accounts staff mfa-enroll NAME`)
    staff_mfa_required: bool = False

    # agent assistance (accounts/assists.py; Glue's /agent-* resources): an agent's impersonation token and
    # its assistance session live this long, with no refresh; the customer is emailed when one starts;
    # a session's run lists at most this many actions (more are audited by their requests, not listed)
    agent_impersonation_ttl: Duration = timedelta(minutes=30)
    agent_assist_notify_customer: bool = True
    agent_assist_max_actions: int = 200

    # argon2id parameters (argon2-cffi's RFC 9106 low-memory profile by default)
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    argon2_parallelism: int = 4
    # threads that run argon2 in an API process (its own pool, at a lower CPU priority); 0: one per core
    argon2_threads: int = 0
    # their nice value (0-19): above the loop's, so refused sign-ins are answered first; 0 leaves them be
    argon2_niceness: int = 19

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.verification_reminder_after >= self.verification_expires_after:
            raise ValueError("ACCOUNTS_VERIFICATION_REMINDER_AFTER must be shorter than ..._EXPIRES_AFTER")
        if self.default_locale not in self.locales:
            raise ValueError("ACCOUNTS_DEFAULT_LOCALE must be one of ACCOUNTS_LOCALES")
        if self.password_max_repeated_characters < 0 or self.password_max_repeated_characters == 1:
            # Spryker's meaning: N refuses N identical characters in a row, so 1 would refuse every password
            raise ValueError("ACCOUNTS_PASSWORD_MAX_REPEATED_CHARACTERS must be 0 (off) or at least 2")
        if self.environment == "production":
            self._check_production()
        if unknown := set(self.mfa_types) - {"email", "totp"}:
            raise ValueError(f"ACCOUNTS_MFA_TYPES: unknown types {sorted(unknown)} (email, totp)")
        if self.mfa_code_attempts < 1 or self.mfa_codes_per_hour < 1:
            raise ValueError("ACCOUNTS_MFA_CODE_ATTEMPTS and ACCOUNTS_MFA_CODES_PER_HOUR must be at least 1")
        if min(self.mfa_code_expires_after, self.mfa_lock_duration, self.mfa_activation_expires_after) <= timedelta(0):
            raise ValueError(
                "ACCOUNTS_MFA_CODE_EXPIRES_AFTER, ..._LOCK_DURATION, ..._ACTIVATION_EXPIRES_AFTER: positive"
            )
        for name, key in [
            ("ACCOUNTS_PAYLOAD_ENCRYPTION_KEY", self.payload_encryption_key),
            ("ACCOUNTS_MFA_ENCRYPTION_KEY", self.mfa_encryption_key),
        ] + [("ACCOUNTS_PAYLOAD_DECRYPTION_KEYS", old) for old in self.payload_decryption_keys]:
            if key is not None and not is_payload_key(key.get_secret_value()):
                raise ValueError(f"{name} must be base64 of exactly 32 bytes (make one with `accounts payload-key`)")
        tls_files = (self.temporal_tls_cert, self.temporal_tls_key, self.temporal_tls_server_ca)
        if self.temporal_tls is False and (any(tls_files) or self.temporal_tls_server_name):
            raise ValueError("ACCOUNTS_TEMPORAL_TLS is false, but ACCOUNTS_TEMPORAL_TLS_* settings are set")
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError(
                "ACCOUNTS_TEMPORAL_TLS_CERT and ACCOUNTS_TEMPORAL_TLS_KEY go together: set both or neither"
            )
        _refuse_below(
            1,
            "at least 1",
            ACCOUNTS_LOCKOUT_MAX_FAILURES=self.lockout_max_failures,
            ACCOUNTS_LOCKOUT_IP_MAX_FAILURES=self.lockout_ip_max_failures,
            ACCOUNTS_LOCKOUT_DEVICE_MAX_FAILURES=self.lockout_device_max_failures,
        )
        if not 0 <= self.client_ipv6_prefix <= 128:
            raise ValueError("ACCOUNTS_CLIENT_IPV6_PREFIX must be between 0 and 128")
        _refuse_below(
            0,
            "0 (off) or positive",
            ACCOUNTS_RATE_LIMIT_PER_IP=self.rate_limit_per_ip,
            ACCOUNTS_RATE_LIMIT_GLOBAL=self.rate_limit_global,
            ACCOUNTS_ADDRESS_REQUESTS_PER_HOUR=self.address_requests_per_hour,
        )
        if self.rate_limit_window <= timedelta(0) or self.throttle_cleanup_interval <= timedelta(0):
            raise ValueError("ACCOUNTS_RATE_LIMIT_WINDOW and ACCOUNTS_THROTTLE_CLEANUP_INTERVAL must be positive")
        if not 0 <= self.argon2_niceness <= 19:
            raise ValueError("ACCOUNTS_ARGON2_NICENESS must be between 0 and 19")
        if self.device_tokens_per_account < 1:
            raise ValueError("ACCOUNTS_DEVICE_TOKENS_PER_ACCOUNT must be at least 1")
        if min(self.email_sends_per_second, self.bulk_email_sends_per_second) <= 0:
            raise ValueError("ACCOUNTS_EMAIL_SENDS_PER_SECOND and ..._BULK_EMAIL_SENDS_PER_SECOND must be positive")
        slots = (self.lifecycle_activity_slots, self.signin_activity_slots, self.email_activity_slots)
        if min(*slots, self.bulk_email_activity_slots, self.database_pool_size) < 1 or self.database_max_overflow < 0:
            raise ValueError("ACCOUNTS_*_ACTIVITY_SLOTS and ACCOUNTS_DATABASE_POOL_SIZE must be at least 1")
        if self.worker_max_cached_workflows < 2:
            raise ValueError("ACCOUNTS_WORKER_MAX_CACHED_WORKFLOWS must be at least 2")
        if not self.worker_task_queues or len(set(self.worker_task_queues)) != len(self.worker_task_queues):
            raise ValueError(f"ACCOUNTS_WORKER_TASK_QUEUES must name each of {list(KINDS)} at most once, one at least")
        if any(suffix and self.task_queue.endswith(suffix) for suffix in SUFFIXES.values()):
            raise ValueError("ACCOUNTS_TASK_QUEUE must not end in -signin, -email or -bulk-email (its siblings' names)")
        if self.import_emails_per_second <= 0:
            raise ValueError("ACCOUNTS_IMPORT_EMAILS_PER_SECOND must be positive")
        if not 1 <= self.import_batch_size <= 10_000 or not 1 <= self.import_concurrent_batches <= 8:
            raise ValueError("ACCOUNTS_IMPORT_BATCH_SIZE must be 1-10000, ACCOUNTS_IMPORT_CONCURRENT_BATCHES 1-8")
        if self.request_timeout <= timedelta(0):
            raise ValueError("ACCOUNTS_REQUEST_TIMEOUT must be positive")
        for port in (self.api_metrics_port, self.worker_metrics_port):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError("ACCOUNTS_API_METRICS_PORT and ACCOUNTS_WORKER_METRICS_PORT must be 0-65535")
        self._check_inactivity()
        if self.password_min_length > self.password_max_length:
            raise ValueError("ACCOUNTS_PASSWORD_MIN_LENGTH exceeds ACCOUNTS_PASSWORD_MAX_LENGTH")
        return self

    def _check_inactivity(self) -> None:
        steps = (self.inactive_remind_after, self.inactive_warn_after, self.inactive_retire_after)
        if steps[0] is None:
            return
        if steps[1] is None or steps[2] is None or not timedelta(0) < steps[0] < steps[1] < steps[2]:
            raise ValueError(
                "ACCOUNTS_INACTIVE_REMIND_AFTER, ..._WARN_AFTER and ..._RETIRE_AFTER: all three set, positive and"
                " each longer than the one before"
            )
        if not 1 <= self.inactive_sweep_page_size <= 10_000 or self.inactive_sweep_interval <= timedelta(0):
            raise ValueError("ACCOUNTS_INACTIVE_SWEEP_PAGE_SIZE must be 1-10000, ..._SWEEP_INTERVAL positive")

    def _check_production(self) -> None:
        """Production refuses placeholders and missing keys: one line that names every setting to fix."""
        missing = []
        secret = self.secret_key.get_secret_value()
        if secret == DEVELOPMENT_SECRET or len(secret) < 32:
            missing.append("ACCOUNTS_SECRET_KEY (32+ random characters: openssl rand -hex 32)")
        if self.payload_encryption_key is None:
            missing.append("ACCOUNTS_PAYLOAD_ENCRYPTION_KEY (accounts payload-key)")
        if self.mfa_encryption_key is None:
            missing.append("ACCOUNTS_MFA_ENCRYPTION_KEY (accounts payload-key)")
        if not self.payload_encryption:
            missing.append("ACCOUNTS_PAYLOAD_ENCRYPTION (must stay true)")
        if self.jwt_private_key_path is None:
            missing.append("ACCOUNTS_JWT_PRIVATE_KEY_PATH (accounts jwt-key PATH)")
        if missing:
            raise ValueError(f"production refuses placeholders and missing keys: set {'; '.join(missing)}")

    @field_validator(
        "payload_decryption_keys",
        "codec_cors_origins",
        "mfa_types",
        "mfa_protected_requests",
        "inactive_open_order_statuses",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):  # a JSON list, as the other list settings take
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def codec_origins(self) -> list[str]:
        """The browser origins allowed to call the codec endpoints (CORS)."""
        if self.codec_cors_origins:
            return [origin.rstrip("/") for origin in self.codec_cors_origins]
        ui = urlsplit(self.temporal_ui_url)
        return [f"{ui.scheme}://{ui.netloc}"]

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or "localhost:7233"

    @property
    def smtp_target(self) -> tuple[str, int]:
        return (self.smtp_host or "127.0.0.1", self.smtp_port or 1025)

    @property
    def templates_dir(self) -> Path:
        return PROJECT_ROOT / "templates"
