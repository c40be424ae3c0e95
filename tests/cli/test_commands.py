"""The command line as a user runs it: real processes, real databases."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.cli.running import cli_env, run_cli, serving
from tests.databases import TestDatabase

DATA = Path(__file__).parent.parent / "data"
ACME = "65f1c0ffee0000000000000a"
VIEWER = {"query": "{ viewer { kind userId role } }"}


def test_migrate_import_token_and_serve_work_together(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, empty_database.url_string)
    migrated = run_cli(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout

    imported = run_cli(env, "import", str(DATA / "every_kind.ndjson"))
    assert imported.returncode == 0, imported.stderr
    assert "3 usage" in imported.stdout

    minted = run_cli(env, "token", "--user", "7", "--ttl", "600")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()

    with serving(env) as base:
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        viewer = httpx.post(
            f"{base}/graphql", json=VIEWER, headers={"Authorization": f"Bearer {token}"}
        ).json()["data"]["viewer"]
        assert viewer == {"kind": "USER", "userId": 7, "role": "admin"}
        assert httpx.get(f"{base}/healthz").headers["x-request-id"].startswith("req_")


def test_serve_refuses_a_schema_that_is_behind(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    result = run_cli(cli_env(tmp_path, empty_database.url_string), "serve", "--port", "1")
    assert result.returncode == 1
    assert "usagegraph migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_default_migrates_itself(tmp_path: Path) -> None:
    env = cli_env(tmp_path, database_url=None)
    imported = run_cli(env, "import", str(DATA / "every_kind.ndjson"))
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / "data" / "usagegraph.sqlite3").exists()
    with serving(env) as base:
        assert httpx.get(f"{base}/readyz").status_code == 200


def test_bad_file_is_rejected_with_its_line_and_nothing_is_imported(
    database: TestDatabase, tmp_path: Path
) -> None:
    lines = (DATA / "every_kind.ndjson").read_text().splitlines()
    lines[5] = lines[5].replace('"user":9', '"user":"nine"')
    bad = tmp_path / "bad.ndjson"
    bad.write_text("\n".join(lines))
    env = cli_env(tmp_path, database.url_string)
    result = run_cli(env, "import", str(bad))
    assert result.returncode == 1
    assert "line 6: user must be an integer" in result.stderr
    assert "nothing was imported" in result.stderr
    assert run_cli(env, "token", "--user", "7").returncode == 1  # user 7 (line 3) is absent


def test_apikey_create_prints_a_new_key_once(database: TestDatabase, tmp_path: Path) -> None:
    env = cli_env(tmp_path, database.url_string)
    assert run_cli(env, "import", str(DATA / "every_kind.ndjson")).returncode == 0
    first = run_cli(env, "apikey", "create", "--institution", ACME, "--name", "ci")
    second = run_cli(env, "apikey", "create", "--institution", ACME)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("ug_live_")
    assert first.stdout.strip() != second.stdout.strip()
    missing = run_cli(env, "apikey", "create", "--institution", "f" * 24)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_token_for_an_unknown_user_is_refused(database: TestDatabase, tmp_path: Path) -> None:
    result = run_cli(cli_env(tmp_path, database.url_string), "token", "--user", "12345")
    assert result.returncode == 1
    assert "user 12345 does not exist" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("USAGEGRAPH_DATABASE_URL", "mysql://root@localhost/db", "must be a sqlite or postgresql"),
        ("USAGEGRAPH_DATABASE_URL", "not a url", "not a database URL"),
        ("USAGEGRAPH_JWT_SECRET", "short", "at least 32 characters"),
        ("USAGEGRAPH_REDIS_URL", "http://localhost:6379", "redis://"),
    ],
)
def test_unusable_settings_stop_the_command_with_a_clear_message(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    env = cli_env(tmp_path, database_url=None, **{variable: value})
    result = run_cli(env, "migrate")
    assert result.returncode == 2
    assert variable in result.stderr
    assert message in result.stderr


def test_unreachable_database_is_reported_without_a_traceback(tmp_path: Path) -> None:
    env = cli_env(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    result = run_cli(env, "migrate")
    assert result.returncode == 1
    assert "cannot use the database at postgresql+asyncpg://postgres@127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_adds_data_once_with_if_empty(database: TestDatabase, tmp_path: Path) -> None:
    env = cli_env(tmp_path, database.url_string)
    args = ("demo", "--users", "12", "--institutions", "2", "--events", "500", "--days", "20")
    first = run_cli(env, *args, "--if-empty")
    assert first.returncode == 0, first.stderr
    assert "12 users, 500 usage events" in first.stdout
    second = run_cli(env, *args, "--if-empty")
    assert second.returncode == 0, second.stderr
    assert "no demo data added" in second.stdout
    token = run_cli(env, "token", "--user", second.stdout.split("--user ")[1].split()[0])
    assert token.returncode == 0, token.stderr
