"""Settings read from the environment, validated once at startup.

Every setting has one place: here. An unusable value raises `SettingsError` with a message
naming the variable, so `serve` and the other commands fail before doing any work.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

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
class Settings:
    """The validated configuration of one usagegraph process."""

    database_url: URL
    # True when no database was configured: the embedded SQLite file, which migrates itself.
    embedded_database: bool
    jwt_secret: str
    redis_url: str | None
    data_dir: Path

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
