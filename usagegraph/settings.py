"""Settings read from the environment, validated once at startup.

Every setting has one place: here. An unusable value raises `SettingsError` with a message
naming the variable, so `serve` and the other commands fail before doing any work.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from usagegraph.input_ids import parse_integer

DATABASE_URL_VAR = "USAGEGRAPH_DATABASE_URL"
JWT_SECRET_VAR = "USAGEGRAPH_JWT_SECRET"
REDIS_URL_VAR = "USAGEGRAPH_REDIS_URL"
DATA_DIR_VAR = "USAGEGRAPH_DATA_DIR"

# Every variable `Settings.from_env` reads, in the README's order: `serve --help` lists them
# (serve uses them all), and tests/cli/test_help.py keeps this list, the code below and the
# README's Configuration table in step.
VARIABLES = (
    DATABASE_URL_VAR,
    JWT_SECRET_VAR,
    REDIS_URL_VAR,
    DATA_DIR_VAR,
    "USAGEGRAPH_GRAPHQL_MAX_DEPTH",
    "USAGEGRAPH_GRAPHQL_MAX_ALIASES",
    "USAGEGRAPH_GRAPHQL_MAX_TOKENS",
    "USAGEGRAPH_GRAPHQL_MAX_COST",
    "USAGEGRAPH_GRAPHQL_MAX_FIELDS",
    "USAGEGRAPH_GRAPHQL_MAX_OPERATIONS",
    "USAGEGRAPH_GRAPHQL_INTROSPECTION",
    "USAGEGRAPH_GRAPHQL_COMPILE",
    "USAGEGRAPH_GRAPHQL_PERSISTED_ONLY",
    "USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST",
    "USAGEGRAPH_GRAPHIQL",
    "USAGEGRAPH_JWT_KEYS",
    "USAGEGRAPH_JWT_SIGNING_KID",
    "USAGEGRAPH_JWT_ISSUER",
    "USAGEGRAPH_JWT_AUDIENCE",
    "USAGEGRAPH_JWT_LEEWAY_SECONDS",
    "USAGEGRAPH_JWT_MAX_TTL_SECONDS",
    "USAGEGRAPH_RATE_LIMIT_PER_MINUTE",
    "USAGEGRAPH_RATE_LIMIT_BURST",
    "USAGEGRAPH_DATABASE_POOL_SIZE",
    "USAGEGRAPH_GC_YOUNG_THRESHOLD",
    "USAGEGRAPH_REQUEST_TIMEOUT_SECONDS",
    "USAGEGRAPH_MAX_BODY_BYTES",
    "USAGEGRAPH_MAX_EVENTS_PER_REQUEST",
    "USAGEGRAPH_MAX_BLOCKING_SECONDS",
    "USAGEGRAPH_SHUTDOWN_TIMEOUT_SECONDS",
    "USAGEGRAPH_CORS_ORIGINS",
    "USAGEGRAPH_CACHE",
    "USAGEGRAPH_EVENT_MAX_AGE_DAYS",
    "USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS",
    "USAGEGRAPH_AUTO_RELOAD_MAX_PER_PERIOD",
    "USAGEGRAPH_AUTO_RELOAD_PERIOD_SECONDS",
    "USAGEGRAPH_LIVE_MAX_CONNECTIONS",
    "USAGEGRAPH_LIVE_RECHECK_SECONDS",
    "USAGEGRAPH_METRICS",
    "USAGEGRAPH_METRICS_TOKEN",
    "USAGEGRAPH_LOG_FORMAT",
    "USAGEGRAPH_LOG_LEVEL",
    "USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE",
    "USAGEGRAPH_WEBHOOKS_DELIVER",
    "USAGEGRAPH_WEBHOOKS_RETRY_BASE_MS",
    "USAGEGRAPH_WEBHOOKS_MAX_ATTEMPTS",
    "USAGEGRAPH_WEBHOOKS_POLL_MS",
    "USAGEGRAPH_WEBHOOKS_TIMEOUT_SECONDS",
    "USAGEGRAPH_WEBHOOKS_LEASE_SECONDS",
)

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_JWT_SECRET_LENGTH = 32
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_EVENTS_PER_REQUEST = 10_000
# A worker's connections to PostgreSQL. Every request takes one for its caller and reads, and
# writes take another; a request beyond the pool's size opens a connection and closes it again
# when it is done (a new PostgreSQL backend each time: at 16 concurrent single-event requests
# per worker, a pool of 10 spent more on connecting than on the writes). Two workers at the
# defaults hold at most 60 of PostgreSQL's default 100.
DEFAULT_DATABASE_POOL_SIZE = 20
DATABASE_POOL_OVERFLOW = 10

# Objects allocated (net) before the garbage collector's young pass (Python: 700); see
# usagegraph/garbage_collection.py. At 700 a 100-member events read ran ~18 passes.
DEFAULT_GC_YOUNG_THRESHOLD = 50_000

# Async drivers we ship; plain URLs are upgraded to these so users can paste what they know.
_DRIVER_FOR_BACKEND = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_BACKEND_ALIASES = {"postgres": "postgresql"}


class SettingsError(ValueError):
    """A setting from the environment cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class GraphQLLimits:
    """What one GraphQL request may ask for (USAGEGRAPH_GRAPHQL_*, USAGEGRAPH_GRAPHIQL)."""

    max_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_cost: int = 5000
    # Field nodes once every fragment spread is expanded (a fan-out of spreads multiplies them).
    max_fields: int = 2000
    # Operations in one batched (JSON array) request.
    max_operations: int = 10
    introspection: bool = True
    graphiql: bool = True
    # Allow-list mode: only the documents of the persisted-query manifest run.
    persisted_only: bool = False
    persisted_manifest: Path | None = None
    # Answer covered root fields with one compiled SQL statement on PostgreSQL
    # (schema/compiled_execution.py); off: every field goes down the resolver path.
    compile_reads: bool = True


@dataclass(frozen=True, slots=True)
class TokenRules:
    """How JWTs are checked beyond the main secret (USAGEGRAPH_JWT_*)."""

    # kid -> secret: further keys accepted (rotation), selected by the token's `kid` header.
    keys: Mapping[str, str] = field(default_factory=dict)
    # The kid new tokens are signed with (its secret must be in `keys`); None: the main secret.
    signing_kid: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30
    # The longest lifetime (exp - iat) a token may claim; longer ones, and tokens without
    # `iat`, are refused. `usagegraph token --ttl` may not mint longer ones either.
    max_ttl_seconds: int = 86400


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Token bucket per credential (USAGEGRAPH_RATE_LIMIT_*); 0 per minute turns it off."""

    per_minute: int = 600
    burst: int = 120


@dataclass(frozen=True, slots=True)
class EventTimeWindow:
    """When an online usage write may say its event happened (USAGEGRAPH_EVENT_MAX_*):
    at most `max_age_days` ago and `max_future_seconds` ahead of the server's clock, like
    Stripe's meter events (35 days back, 5 minutes ahead). Older history is loaded with
    `usagegraph import`. The window also bounds which months get usage partitions."""

    max_age_days: int = 35
    max_future_seconds: int = 300

    @property
    def max_age(self) -> timedelta:
        return timedelta(days=self.max_age_days)

    @property
    def max_future(self) -> timedelta:
        return timedelta(seconds=self.max_future_seconds)


@dataclass(frozen=True, slots=True)
class AutoReloadLimit:
    """At most `max_reloads` automatic reloads per wallet in any rolling `period_seconds`
    (USAGEGRAPH_AUTO_RELOAD_*); a crossing beyond it reloads nothing."""

    max_reloads: int = 5
    period_seconds: int = 86400

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.period_seconds)


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """GraphQL subscriptions over websockets (usagegraph/live, schema/live_endpoint.py)."""

    # Open websockets one credential (a user, an institution's key) may hold per worker
    # (USAGEGRAPH_LIVE_MAX_CONNECTIONS): a browser tab needs one; a leaked token cannot
    # pin a worker's memory with thousands.
    max_connections_per_credential: int = 10
    # How often an open websocket's credential is checked again (USAGEGRAPH_LIVE_RECHECK_SECONDS):
    # a revoked API key, a deleted user or changed memberships take effect within this; an
    # expiring token closes the socket at its `exp` regardless.
    recheck_seconds: int = 30


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Webhook endpoints and their deliverer (USAGEGRAPH_WEBHOOKS_*).

    Attempt n (from 1) that fails is retried `retry_base_ms * 2**(n-1)` later, until
    `max_attempts`: the defaults retry for about a day (90 s, 3 min, ... 12.8 h: 25.6 h in
    all); tests shrink the base to milliseconds. `lease_seconds` is how long the elected
    deliverer's lease lasts without renewal (after a crash, another process takes over then).
    """

    # Private, loopback and link-local receivers are refused (SSRF) unless this is true.
    allow_private: bool = False
    # Whether `serve` runs the (leader-elected) deliverer; `usagegraph worker` always does.
    deliver: bool = True
    retry_base_ms: int = 90_000
    max_attempts: int = 11
    poll_ms: int = 1000
    timeout_seconds: int = 10
    lease_seconds: int = 30

    def retry_delay(self, attempts: int) -> timedelta:
        """How long after the `attempts`-th failed attempt the next one is due."""
        return timedelta(milliseconds=self.retry_base_ms * 2 ** max(0, attempts - 1))


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one usagegraph process."""

    database_url: URL
    # True when no database was configured: the embedded SQLite file, which migrates itself.
    embedded_database: bool
    jwt_secret: str
    redis_url: str | None
    data_dir: Path
    graphql: GraphQLLimits = field(default_factory=GraphQLLimits)
    tokens: TokenRules = field(default_factory=TokenRules)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    # Connections each worker keeps open to PostgreSQL (USAGEGRAPH_DATABASE_POOL_SIZE); up to
    # DATABASE_POOL_OVERFLOW more are opened when busier and closed again once returned.
    database_pool_size: int = DEFAULT_DATABASE_POOL_SIZE
    # The garbage collector's young threshold once the worker has started, after freezing
    # what it holds (USAGEGRAPH_GC_YOUNG_THRESHOLD; 0: Python's defaults, nothing frozen).
    gc_young_threshold: int = DEFAULT_GC_YOUNG_THRESHOLD
    # A request still running after this many seconds is answered 503 and its work cancelled.
    request_timeout_seconds: float = 30.0
    # Largest request body read (USAGEGRAPH_MAX_BODY_BYTES; http/body_limit.py): 8 MiB holds a
    # recordUsageBatch of 1,000 events with every text field at its longest, escaped.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Most CloudEvents one POST /v1/events may carry (USAGEGRAPH_MAX_EVENTS_PER_REQUEST); more
    # is refused 413. Written in transactions of 1,000; the body stays under max_body_bytes.
    max_events_per_request: int = DEFAULT_MAX_EVENTS_PER_REQUEST
    # Longest a request may hold its worker's event loop without awaiting; it is then
    # interrupted and answered 503 (USAGEGRAPH_MAX_BLOCKING_SECONDS; http/loop_watchdog.py).
    max_blocking_seconds: float = 5.0
    # After SIGTERM: how long open requests may finish; the worker is ended 10 s later at most
    # (USAGEGRAPH_SHUTDOWN_TIMEOUT_SECONDS).
    shutdown_timeout_seconds: float = 10.0
    # The usage-history response cache (USAGEGRAPH_CACHE); off only to measure or debug.
    cache_enabled: bool = True
    event_window: EventTimeWindow = field(default_factory=EventTimeWindow)
    auto_reload: AutoReloadLimit = field(default_factory=AutoReloadLimit)
    live: LiveLimits = field(default_factory=LiveLimits)
    # Browser origins allowed to call the APIs with credentials (USAGEGRAPH_CORS_ORIGINS);
    # empty: CORS off.
    cors_origins: tuple[str, ...] = ()
    # GET /metrics in the Prometheus text format (USAGEGRAPH_METRICS); off: not served at all.
    metrics_enabled: bool = True
    # When set, /metrics answers only `Authorization: Bearer <token>` (USAGEGRAPH_METRICS_TOKEN):
    # the counters say how busy the service is, which is not everyone's business.
    metrics_token: str | None = None
    # USAGEGRAPH_LOG_FORMAT: `json` or `text`; None: text on a terminal, JSON otherwise.
    log_format: str | None = None
    # USAGEGRAPH_LOG_LEVEL: a standard logging level name.
    log_level: str = "INFO"
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.database_url.get_backend_name()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise `SettingsError` for the first bad one."""
        env = dict(os.environ if environ is None else environ)
        data_dir = _data_dir(env)
        raw_url = env.get(DATABASE_URL_VAR, "").strip()
        if raw_url:
            database_url, embedded = parse_database_url(raw_url), False
        else:
            database_url, embedded = embedded_database_url(data_dir), True
        return cls(
            database_url=database_url,
            embedded_database=embedded,
            jwt_secret=_jwt_secret(env, data_dir),
            redis_url=_redis_url(env),
            data_dir=data_dir,
            graphql=_graphql_limits(env),
            tokens=_token_rules(env),
            rate_limit=RateLimit(
                per_minute=_integer(env, "USAGEGRAPH_RATE_LIMIT_PER_MINUTE", 600, minimum=0),
                burst=_integer(env, "USAGEGRAPH_RATE_LIMIT_BURST", 120, minimum=1),
            ),
            database_pool_size=_integer(
                env,
                "USAGEGRAPH_DATABASE_POOL_SIZE",
                DEFAULT_DATABASE_POOL_SIZE,
                minimum=1,
                maximum=1000,
            ),
            gc_young_threshold=_integer(
                env,
                "USAGEGRAPH_GC_YOUNG_THRESHOLD",
                DEFAULT_GC_YOUNG_THRESHOLD,
                minimum=0,
                maximum=10_000_000,
            ),
            request_timeout_seconds=float(
                _integer(env, "USAGEGRAPH_REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
            ),
            max_body_bytes=_integer(
                env, "USAGEGRAPH_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024
            ),
            max_events_per_request=_integer(
                env,
                "USAGEGRAPH_MAX_EVENTS_PER_REQUEST",
                DEFAULT_MAX_EVENTS_PER_REQUEST,
                minimum=1,
            ),
            max_blocking_seconds=float(
                _integer(env, "USAGEGRAPH_MAX_BLOCKING_SECONDS", 5, minimum=1)
            ),
            shutdown_timeout_seconds=float(
                _integer(env, "USAGEGRAPH_SHUTDOWN_TIMEOUT_SECONDS", 10, minimum=1)
            ),
            cache_enabled=_boolean(env, "USAGEGRAPH_CACHE", True),
            cors_origins=_cors_origins(env),
            event_window=_event_window(env),
            auto_reload=_auto_reload_limit(env),
            live=LiveLimits(
                max_connections_per_credential=_integer(
                    env, "USAGEGRAPH_LIVE_MAX_CONNECTIONS", 10, minimum=1, maximum=10_000
                ),
                recheck_seconds=_integer(
                    env, "USAGEGRAPH_LIVE_RECHECK_SECONDS", 30, minimum=1, maximum=3600
                ),
            ),
            metrics_enabled=_boolean(env, "USAGEGRAPH_METRICS", True),
            metrics_token=_metrics_token(env),
            log_format=_choice(env, "USAGEGRAPH_LOG_FORMAT", LOG_FORMATS),
            log_level=_choice(env, "USAGEGRAPH_LOG_LEVEL", LOG_LEVELS) or "INFO",
            webhooks=_webhooks(env),
        )


def _integer(
    env: dict[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        number = parse_integer(raw)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise SettingsError(f"{name} must be a whole number {bounds}, got {raw!r}")
    return number


# Bounds of the event-time window. The past is capped at a year so a setting cannot reopen
# the unbounded backdating (and partition creation) the window exists to stop; the future
# only absorbs clock skew.
MAX_EVENT_AGE_DAYS = 366
MAX_EVENT_FUTURE_SECONDS = 3600


def _event_window(env: dict[str, str]) -> EventTimeWindow:
    defaults = EventTimeWindow()
    return EventTimeWindow(
        max_age_days=_integer(
            env,
            "USAGEGRAPH_EVENT_MAX_AGE_DAYS",
            defaults.max_age_days,
            minimum=1,
            maximum=MAX_EVENT_AGE_DAYS,
        ),
        max_future_seconds=_integer(
            env,
            "USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS",
            defaults.max_future_seconds,
            minimum=0,
            maximum=MAX_EVENT_FUTURE_SECONDS,
        ),
    )


def _auto_reload_limit(env: dict[str, str]) -> AutoReloadLimit:
    defaults = AutoReloadLimit()
    return AutoReloadLimit(
        max_reloads=_integer(
            env, "USAGEGRAPH_AUTO_RELOAD_MAX_PER_PERIOD", defaults.max_reloads, minimum=1
        ),
        period_seconds=_integer(
            env, "USAGEGRAPH_AUTO_RELOAD_PERIOD_SECONDS", defaults.period_seconds, minimum=1
        ),
    )


def _webhooks(env: dict[str, str]) -> WebhookSettings:
    defaults = WebhookSettings()
    prefix = "USAGEGRAPH_WEBHOOKS_"
    return WebhookSettings(
        allow_private=_boolean(env, f"{prefix}ALLOW_PRIVATE", defaults.allow_private),
        deliver=_boolean(env, f"{prefix}DELIVER", defaults.deliver),
        retry_base_ms=_integer(env, f"{prefix}RETRY_BASE_MS", defaults.retry_base_ms, minimum=1),
        max_attempts=_integer(
            env, f"{prefix}MAX_ATTEMPTS", defaults.max_attempts, minimum=1, maximum=30
        ),
        poll_ms=_integer(env, f"{prefix}POLL_MS", defaults.poll_ms, minimum=10),
        timeout_seconds=_integer(
            env, f"{prefix}TIMEOUT_SECONDS", defaults.timeout_seconds, minimum=1, maximum=60
        ),
        lease_seconds=_integer(env, f"{prefix}LEASE_SECONDS", defaults.lease_seconds, minimum=1),
    )


def _boolean(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _graphql_limits(env: dict[str, str]) -> GraphQLLimits:
    defaults = GraphQLLimits()
    prefix = "USAGEGRAPH_GRAPHQL_"
    return GraphQLLimits(
        max_depth=_integer(env, prefix + "MAX_DEPTH", defaults.max_depth, minimum=1),
        max_aliases=_integer(env, prefix + "MAX_ALIASES", defaults.max_aliases, minimum=0),
        max_tokens=_integer(env, prefix + "MAX_TOKENS", defaults.max_tokens, minimum=1),
        max_cost=_integer(env, prefix + "MAX_COST", defaults.max_cost, minimum=1),
        max_fields=_integer(env, prefix + "MAX_FIELDS", defaults.max_fields, minimum=1),
        max_operations=_integer(env, prefix + "MAX_OPERATIONS", defaults.max_operations, minimum=1),
        introspection=_boolean(env, prefix + "INTROSPECTION", defaults.introspection),
        graphiql=_boolean(env, "USAGEGRAPH_GRAPHIQL", defaults.graphiql),
        compile_reads=_boolean(env, prefix + "COMPILE", defaults.compile_reads),
        **_persisted_queries(env),
    )


def _persisted_queries(env: dict[str, str]) -> dict[str, Any]:
    """USAGEGRAPH_GRAPHQL_PERSISTED_ONLY needs the manifest that lists the allowed documents."""
    persisted_only = _boolean(env, "USAGEGRAPH_GRAPHQL_PERSISTED_ONLY", False)
    raw = env.get("USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST", "").strip()
    manifest = Path(raw).expanduser() if raw else None
    if manifest is not None and not manifest.is_file():
        raise SettingsError(f"USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST: no file at {manifest}")
    if persisted_only and manifest is None:
        raise SettingsError(
            "USAGEGRAPH_GRAPHQL_PERSISTED_ONLY=true needs USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST "
            "(an Apollo persisted-query manifest listing the documents that may run)"
        )
    return {"persisted_only": persisted_only, "persisted_manifest": manifest}


def _token_rules(env: dict[str, str]) -> TokenRules:
    """USAGEGRAPH_JWT_KEYS is `kid=secret,kid=secret`; the other variables are plain."""
    keys: dict[str, str] = {}
    for item in filter(
        None, (part.strip() for part in env.get("USAGEGRAPH_JWT_KEYS", "").split(","))
    ):
        kid, sep, secret = item.partition("=")
        if not sep or not kid or len(secret) < MIN_JWT_SECRET_LENGTH:
            raise SettingsError(
                "USAGEGRAPH_JWT_KEYS must be kid=secret pairs separated by commas, each "
                f"secret at least {MIN_JWT_SECRET_LENGTH} characters"
            )
        keys[kid] = secret
    signing_kid = env.get("USAGEGRAPH_JWT_SIGNING_KID", "").strip() or None
    if signing_kid is not None and signing_kid not in keys:
        raise SettingsError("USAGEGRAPH_JWT_SIGNING_KID must name a kid of USAGEGRAPH_JWT_KEYS")
    return TokenRules(
        keys=keys,
        signing_kid=signing_kid,
        issuer=env.get("USAGEGRAPH_JWT_ISSUER", "").strip() or None,
        audience=env.get("USAGEGRAPH_JWT_AUDIENCE", "").strip() or None,
        leeway_seconds=_integer(env, "USAGEGRAPH_JWT_LEEWAY_SECONDS", 30, minimum=0),
        max_ttl_seconds=_integer(
            env, "USAGEGRAPH_JWT_MAX_TTL_SECONDS", TokenRules().max_ttl_seconds, minimum=1
        ),
    )


def _cors_origins(env: dict[str, str]) -> tuple[str, ...]:
    """USAGEGRAPH_CORS_ORIGINS: `https://app.example.com,https://admin.example.com`.

    Browsers send credentials (the Authorization header) to these origins' pages, so a
    wildcard is refused: every origin is named, with its scheme and no path.
    """
    name = "USAGEGRAPH_CORS_ORIGINS"
    origins = tuple(filter(None, (part.strip() for part in env.get(name, "").split(","))))
    for origin in origins:
        parts = urlsplit(origin)
        if origin == "*" or "*" in origin:
            raise SettingsError(f"{name} may not hold a wildcard: name each origin")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise SettingsError(
                f"{name} must list origins like https://app.example.com, got {origin!r}"
            )
    return origins


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    """One of `choices` (case-insensitive), or None when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def _metrics_token(env: dict[str, str]) -> str | None:
    """USAGEGRAPH_METRICS_TOKEN: unset or blank, /metrics is open (to whoever reaches it)."""
    token = env.get("USAGEGRAPH_METRICS_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < 16:
        raise SettingsError("USAGEGRAPH_METRICS_TOKEN must be at least 16 characters")
    return token


def _data_dir(env: dict[str, str]) -> Path:
    """Where the embedded database and the generated development secret live."""
    if env.get(DATA_DIR_VAR):
        return Path(env[DATA_DIR_VAR]).expanduser()
    xdg = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "share")
    return Path(xdg).expanduser() / "usagegraph"


def embedded_database_url(data_dir: Path) -> URL:
    """The SQLite file used when no database is configured."""
    return make_url(f"sqlite+aiosqlite:///{data_dir / 'usagegraph.sqlite3'}")


def parse_database_url(raw: str) -> URL:
    """Parse an SQLAlchemy URL and pin it to the async driver of its backend."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise SettingsError(f"{DATABASE_URL_VAR} is not a database URL: {raw!r}") from exc
    backend = _BACKEND_ALIASES.get(url.get_backend_name(), url.get_backend_name())
    if backend not in _DRIVER_FOR_BACKEND:
        raise SettingsError(
            f"{DATABASE_URL_VAR} must be a sqlite or postgresql URL "
            f"(e.g. postgresql+asyncpg://user@host/db), got backend {backend!r}"
        )
    driver = _DRIVER_FOR_BACKEND[backend]
    if url.drivername not in (backend, driver, url.get_backend_name()):
        raise SettingsError(
            f"{DATABASE_URL_VAR}: driver {url.drivername!r} is not supported; use {driver!r}"
        )
    url = url.set(drivername=driver)
    if backend == "sqlite" and not url.database:
        raise SettingsError(f"{DATABASE_URL_VAR}: an in-memory SQLite database keeps nothing")
    if backend == "postgresql" and not url.database:
        raise SettingsError(f"{DATABASE_URL_VAR} must name a database")
    return url


def _jwt_secret(env: dict[str, str], data_dir: Path) -> str:
    """The configured secret, or a generated one kept beside the embedded database.

    Generating one keeps the quick start to one command while `token` and `serve` still agree
    across processes; production deployments set the variable.
    """
    secret = env.get(JWT_SECRET_VAR)
    if secret is not None:
        if len(secret) < MIN_JWT_SECRET_LENGTH:
            raise SettingsError(
                f"{JWT_SECRET_VAR} must be at least {MIN_JWT_SECRET_LENGTH} characters "
                "(HS256 needs a key as long as its hash)"
            )
        return secret
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def _redis_url(env: dict[str, str]) -> str | None:
    raw = env.get(REDIS_URL_VAR, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"{REDIS_URL_VAR} must be a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(f"{REDIS_URL_VAR} must name a host")
    return raw
