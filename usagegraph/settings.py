"""Settings read from the environment, validated once at startup.

Every setting has one place: here. An unusable value raises `SettingsError` with a message
naming the variable, so `serve` and the other commands fail before doing any work.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from usagegraph.input_ids import parse_integer

DATABASE_URL_VAR = "USAGEGRAPH_DATABASE_URL"
JWT_SECRET_VAR = "USAGEGRAPH_JWT_SECRET"
REDIS_URL_VAR = "USAGEGRAPH_REDIS_URL"
DATA_DIR_VAR = "USAGEGRAPH_DATA_DIR"

MIN_JWT_SECRET_LENGTH = 32

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
    # Operations in one batched (JSON array) request.
    max_operations: int = 10
    introspection: bool = True
    graphiql: bool = True


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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Token bucket per credential (USAGEGRAPH_RATE_LIMIT_*); 0 per minute turns it off."""

    per_minute: int = 600
    burst: int = 120


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
    # A request still running after this many seconds is answered 503 and its work cancelled.
    request_timeout_seconds: float = 30.0
    # The usage-history response cache (USAGEGRAPH_CACHE); off only to measure or debug.
    cache_enabled: bool = True

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
            request_timeout_seconds=float(
                _integer(env, "USAGEGRAPH_REQUEST_TIMEOUT_SECONDS", 30, minimum=1)
            ),
            cache_enabled=_boolean(env, "USAGEGRAPH_CACHE", True),
        )


def _integer(env: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        number = parse_integer(raw)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise SettingsError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    return number


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
        max_operations=_integer(env, prefix + "MAX_OPERATIONS", defaults.max_operations, minimum=1),
        introspection=_boolean(env, prefix + "INTROSPECTION", defaults.introspection),
        graphiql=_boolean(env, "USAGEGRAPH_GRAPHIQL", defaults.graphiql),
    )


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
    )


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
