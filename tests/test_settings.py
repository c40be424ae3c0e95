"""Settings: defaults, driver pinning and clear errors for unusable values."""

from __future__ import annotations

from pathlib import Path

import pytest

from usagegraph.settings import Settings, SettingsError

SECRET = "s" * 40


def test_no_database_configured_means_the_embedded_sqlite_file(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET}
    )
    assert settings.embedded_database
    assert settings.backend == "sqlite"
    assert settings.database_url.database == str(tmp_path / "usagegraph.sqlite3")
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("postgresql://u@db/usage", "postgresql+asyncpg"),
        ("postgres://u@db/usage", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/usage", "postgresql+asyncpg"),
        ("sqlite:////var/lib/usage.db", "sqlite+aiosqlite"),
    ],
)
def test_database_urls_are_pinned_to_the_async_driver(
    tmp_path: Path, raw: str, driver: str
) -> None:
    settings = Settings.from_env(
        {
            "USAGEGRAPH_DATABASE_URL": raw,
            "USAGEGRAPH_DATA_DIR": str(tmp_path),
            "USAGEGRAPH_JWT_SECRET": SECRET,
        }
    )
    assert settings.database_url.drivername == driver
    assert not settings.embedded_database


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("USAGEGRAPH_DATABASE_URL", "postgresql+psycopg2://u@db/x", "not supported"),
        ("USAGEGRAPH_DATABASE_URL", "sqlite://", "in-memory"),
        ("USAGEGRAPH_DATABASE_URL", "postgresql://u@db", "must name a database"),
        ("USAGEGRAPH_REDIS_URL", "redis://", "must name a host"),
    ],
)
def test_unusable_values_name_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET, variable: value}
    with pytest.raises(SettingsError, match=message) as raised:
        Settings.from_env(env)
    assert variable in str(raised.value)


def test_generated_secret_is_kept_for_the_next_process(tmp_path: Path) -> None:
    first = Settings.from_env({"USAGEGRAPH_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"USAGEGRAPH_DATA_DIR": str(tmp_path)})
    assert first.jwt_secret == second.jwt_secret
    assert len(first.jwt_secret) >= 32
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_hardening_settings_have_documented_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET}
    )
    assert (
        settings.graphql.max_depth,
        settings.graphql.max_aliases,
        settings.graphql.max_tokens,
    ) == (10, 15, 2000)
    assert settings.graphql.introspection is True
    assert (settings.rate_limit.per_minute, settings.rate_limit.burst) == (600, 120)
    assert settings.tokens.keys == {}
    assert settings.request_timeout_seconds == 30
    assert settings.cache_enabled is True
    assert settings.database_pool_size == 20


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET}
    assert Settings.from_env({**env, "USAGEGRAPH_CACHE": "off"}).cache_enabled is False
    with pytest.raises(SettingsError, match="USAGEGRAPH_CACHE"):
        Settings.from_env({**env, "USAGEGRAPH_CACHE": "maybe"})


def test_jwt_keys_are_parsed_for_rotation(tmp_path: Path) -> None:
    old, new = "o" * 32, "n" * 32
    settings = Settings.from_env(
        {
            "USAGEGRAPH_DATA_DIR": str(tmp_path),
            "USAGEGRAPH_JWT_SECRET": SECRET,
            "USAGEGRAPH_JWT_KEYS": f"2025={old}, 2026={new}",
            "USAGEGRAPH_JWT_SIGNING_KID": "2026",
            "USAGEGRAPH_GRAPHQL_INTROSPECTION": "false",
        }
    )
    assert settings.tokens.keys == {"2025": old, "2026": new}
    assert settings.tokens.signing_kid == "2026"
    assert settings.graphql.introspection is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USAGEGRAPH_GRAPHQL_MAX_DEPTH", "0"),
        ("USAGEGRAPH_GRAPHQL_MAX_DEPTH", "ten"),
        ("USAGEGRAPH_GRAPHIQL", "maybe"),
        ("USAGEGRAPH_JWT_KEYS", "k1=short"),
        ("USAGEGRAPH_JWT_SIGNING_KID", "nope"),
        ("USAGEGRAPH_RATE_LIMIT_BURST", "0"),
    ],
)
def test_unusable_hardening_values_are_refused(tmp_path: Path, variable: str, value: str) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET, variable: value}
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_limits_of_writes_and_tokens_have_documented_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET}
    )
    assert (settings.event_window.max_age_days, settings.event_window.max_future_seconds) == (
        35,
        300,
    )
    assert (settings.auto_reload.max_reloads, settings.auto_reload.period_seconds) == (5, 86400)
    assert settings.tokens.max_ttl_seconds == 86400


def test_limits_of_writes_and_tokens_are_read_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "USAGEGRAPH_DATA_DIR": str(tmp_path),
            "USAGEGRAPH_JWT_SECRET": SECRET,
            "USAGEGRAPH_EVENT_MAX_AGE_DAYS": "366",
            "USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS": "0",
            "USAGEGRAPH_AUTO_RELOAD_MAX_PER_PERIOD": "2",
            "USAGEGRAPH_AUTO_RELOAD_PERIOD_SECONDS": "3600",
            "USAGEGRAPH_JWT_MAX_TTL_SECONDS": "900",
        }
    )
    assert settings.tokens.max_ttl_seconds == 900
    assert (settings.event_window.max_age_days, settings.event_window.max_future_seconds) == (
        366,
        0,
    )
    assert (settings.auto_reload.max_reloads, settings.auto_reload.period_seconds) == (2, 3600)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USAGEGRAPH_EVENT_MAX_AGE_DAYS", "0"),
        ("USAGEGRAPH_EVENT_MAX_AGE_DAYS", "367"),  # the window may not reopen old history
        ("USAGEGRAPH_EVENT_MAX_AGE_DAYS", "-1"),
        ("USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS", "3601"),
        ("USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS", "5m"),
        ("USAGEGRAPH_AUTO_RELOAD_MAX_PER_PERIOD", "0"),
        ("USAGEGRAPH_AUTO_RELOAD_PERIOD_SECONDS", "0"),
        ("USAGEGRAPH_JWT_MAX_TTL_SECONDS", "0"),
        ("USAGEGRAPH_JWT_MAX_TTL_SECONDS", "1e30"),
        ("USAGEGRAPH_DATABASE_POOL_SIZE", "0"),
        ("USAGEGRAPH_DATABASE_POOL_SIZE", "1001"),
    ],
)
def test_unusable_limits_are_refused(tmp_path: Path, variable: str, value: str) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET, variable: value}
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_the_garbage_collector_threshold_is_a_setting(tmp_path: Path) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_JWT_SECRET": SECRET}
    assert Settings.from_env(env).gc_young_threshold == 50_000
    assert Settings.from_env({**env, "USAGEGRAPH_GC_YOUNG_THRESHOLD": "0"}).gc_young_threshold == 0
    with pytest.raises(SettingsError, match="USAGEGRAPH_GC_YOUNG_THRESHOLD"):
        Settings.from_env({**env, "USAGEGRAPH_GC_YOUNG_THRESHOLD": "-1"})
