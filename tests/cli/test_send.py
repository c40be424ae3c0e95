"""`usagegraph send` as a user runs it: a real server, real databases, files on disk."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, free_port, run_cli, serving
from tests.databases import TestDatabase
from tests.fixtures.events_data import seed_events_world, wall_clock_events
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent
from usagegraph.events_client import SendError, read_chunks


async def _stored(engine: AsyncEngine) -> int:
    async with session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageEvent)) or 0)


async def test_send_posts_files_in_chunks_and_sums_the_answers(
    engine: AsyncEngine, database: TestDatabase, tmp_path: Path
) -> None:
    world = await seed_events_world(engine)
    events = wall_clock_events(world, 25)
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_bytes(b"\n".join(orjson.dumps(e) for e in events[:20]) + b"\n\n")
    batch = tmp_path / "events.json"
    batch.write_bytes(orjson.dumps(events[15:], option=orjson.OPT_INDENT_2))
    stranger = {**events[0], "id": "stranger", "subject": str(world.olga)}
    refused = tmp_path / "refused.ndjson"
    refused.write_bytes(b"\n".join(orjson.dumps(e) for e in (events[1], stranger)))
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_API_KEY=world.key)

    with serving(env) as base:
        first = run_cli(env, "send", str(ndjson), "--url", base, "--chunk-size", "7")
        assert first.returncode == 0, first.stderr
        assert "sent 20 events in 3 request(s): 20 inserted, 0 duplicate(s), 0 refused" in (
            first.stdout
        )
        # The array overlaps the NDJSON file by five events: those are duplicates.
        second = run_cli(env, "send", str(batch), "--url", base, "--chunk-size", "4")
        assert second.returncode == 0, second.stderr
        assert "sent 10 events in 3 request(s): 5 inserted, 5 duplicate(s), 0 refused" in (
            second.stdout
        )
        third = run_cli(env, "send", str(refused), "--url", base)
        assert third.returncode == 1
        assert "1 duplicate(s), 1 refused" in third.stdout
        assert "refused: line 2 (id stranger): FORBIDDEN" in third.stderr
    assert await _stored(engine) == 25


async def test_send_stops_at_once_on_a_refused_credential(
    engine: AsyncEngine, database: TestDatabase, tmp_path: Path
) -> None:
    world = await seed_events_world(engine)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in wall_clock_events(world, 3)))
    env = cli_env(tmp_path, database.url_string)
    with serving(env) as base:
        result = run_cli(env, "send", str(path), "--url", base, "--api-key", "ug_live_" + "x" * 40)
    assert result.returncode == 1
    assert "refused lines 1-3 with 401 UNAUTHORIZED" in result.stderr
    assert "retrying" not in result.stderr
    assert "Traceback" not in result.stderr
    assert await _stored(engine) == 0


def test_send_gives_up_after_its_attempts_when_no_server_answers(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text('{"id": "a"}\n')
    env = cli_env(tmp_path, None, USAGEGRAPH_API_KEY="ug_live_" + "x" * 40)
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(env, "send", str(path), "--url", url, "--attempts", "2")
    assert result.returncode == 1
    assert "retrying lines 1-1 in 0.5 s (attempt 1 of 2 failed: ConnectionRefusedError" in (
        result.stderr
    )
    assert "gave up on lines 1-1 after 2 attempts" in result.stderr
    assert "running the same command again is safe" in result.stderr


def test_send_without_an_api_key_says_how_to_give_one(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text("{}\n")
    result = run_cli(cli_env(tmp_path, None), "send", str(path))
    assert result.returncode == 2
    assert "--api-key or set USAGEGRAPH_API_KEY" in result.stderr


AWKWARD = [
    {"id": 'a"],{', "s": "\\", "n": [1, {"x": "]"}, []], "u": "é😀"},
    {"id": "b", "nested": {"deep": [[[{"k": ","}]]]}},
    7,
    None,
    "a, string",
]


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 64, 65536])
def test_a_json_array_is_cut_into_its_elements_whatever_the_read_blocks(
    tmp_path: Path, block_bytes: int
) -> None:
    path = tmp_path / "batch.json"
    path.write_bytes(b"\xef\xbb\xbf \n" + orjson.dumps(AWKWARD * 3, option=orjson.OPT_INDENT_2))
    chunks = list(read_chunks(path, 4, 1 << 20, block_bytes=block_bytes))
    assert [len(chunk.events) for chunk in chunks] == [4, 4, 4, 3]
    assert [orjson.loads(e) for chunk in chunks for e in chunk.events] == AWKWARD * 3
    assert [item for chunk in chunks for item in orjson.loads(chunk.body)] == AWKWARD * 3


def test_chunks_stay_under_the_byte_bound_and_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"id":"0123456789"}\n\n  \n' * 6)
    chunks = list(read_chunks(path, 100, 45))
    assert [chunk.lines for chunk in chunks] == [[1, 4], [7, 10], [13, 16]]
    assert all(len(chunk.body) <= 45 for chunk in chunks)
    # Progress counts the file up to the end of each chunk's last event (blank lines after).
    assert chunks[-1].read_bytes == path.stat().st_size - len(b"\n  \n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1,2", "ends before its closing"),
        (b"[1,,2]", "an empty element"),
        (b"[1,2,]", "an empty element"),
        (b"[1] 2", "goes on after"),
        (b"[1}", "a stray `}`"),
    ],
)
def test_a_broken_json_array_is_refused_before_its_bad_part_is_sent(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "batch.json"
    path.write_bytes(content)
    with pytest.raises(SendError, match=message):
        list(read_chunks(path, 100, 1 << 20, block_bytes=2))
