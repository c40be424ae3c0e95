"""The log formats, the request id on every record of a request, and redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import client_of
from usagegraph.observability.logs import (
    REDACTED,
    RedactedJsonFormatter,
    RedactedTextFormatter,
    RequestIdFilter,
    logging_config,
    redact,
    resolved_format,
)
from usagegraph.settings import Settings, SettingsError

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Records of the root logger, as the JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactedJsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"token {JWT} refused", JWT),
        ("Authorization: Bearer some-opaque-token", "some-opaque-token"),
        ('{"authorization": "Bearer abc.def"}', "abc.def"),
        ("x-access-token=abcdef123", "abcdef123"),
        ("X-API-Key: ug_live_abcdefghijklmnop", "ug_live_abcdefghijklmnop"),
        ("key ug_live_abcdefghijklmnop leaked", "ug_live_abcdefghijklmnop"),
        ("postgresql://app:hunter2@db/usage", "hunter2"),
    ],
)
def test_credentials_are_redacted(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert REDACTED in redacted


def test_redacted_json_stays_json() -> None:
    formatter = RedactedJsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "header %s", (JWT,), None)
    record.headers = {"authorization": f"Bearer {JWT}"}
    line = json.loads(formatter.format(record))
    assert JWT not in json.dumps(line)
    assert line["level"] == "INFO"


def test_text_lines_carry_the_access_fields() -> None:
    record = logging.LogRecord(
        "usagegraph.access", logging.INFO, __file__, 1, "GET / 200", (), None
    )
    record.request_id = "req_1"
    record.principal_kind = "user"
    record.sql_statements = 3
    line = RedactedTextFormatter().format(record)
    assert line.endswith("GET / 200 request_id=req_1 principal_kind=user sql_statements=3")


def test_format_follows_the_setting_or_the_terminal(tmp_path: object) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path)}
    assert Settings.from_env({**env, "USAGEGRAPH_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({**env, "USAGEGRAPH_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(SettingsError, match="USAGEGRAPH_LOG_FORMAT"):
        Settings.from_env({**env, "USAGEGRAPH_LOG_FORMAT": "xml"})
    assert resolved_format("text") == "text"
    assert resolved_format(None) == "json"  # pytest's stderr is no terminal
    config = logging_config("json", "INFO")
    assert config["formatters"]["usagegraph"]["()"] is RedactedJsonFormatter


def _failing_route(application: Starlette) -> Starlette:
    async def fails(_request: Request) -> PlainTextResponse:
        try:
            raise RuntimeError("the disk is on fire")
        except RuntimeError:
            logging.getLogger("usagegraph.test").exception("unexpected error")
        return PlainTextResponse("handled", status_code=500)

    application.router.routes.append(Route("/test-fails", fails))
    return application


async def test_an_error_keeps_its_trace_under_the_clients_request_id(
    settings: Settings, captured: io.StringIO
) -> None:
    async with client_of(settings, changes=_failing_route) as http:
        answer = await http.get("/test-fails", headers={"Authorization": f"Bearer {JWT}"})
    assert "disk" not in answer.text or answer.text == "handled"
    request_id = answer.headers["x-request-id"]
    logged = records(captured)
    error = next(r for r in logged if r["logger"] == "usagegraph.test")
    assert error["request_id"] == request_id
    assert "RuntimeError: the disk is on fire" in error["exc_info"]
    access = next(r for r in logged if r["logger"] == "usagegraph.access")
    assert access["request_id"] == request_id
    assert (access["route"], access["status"]) == ("/test-fails", 500)
    assert JWT not in captured.getvalue()
