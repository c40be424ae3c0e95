"""Logging: one configuration for usagegraph, uvicorn and every library, as JSON or text.

`USAGEGRAPH_LOG_FORMAT=json` writes one JSON object per line (python-json-logger over the
standard library, so every library's records come out the same way), `text` a line a person
reads; unset, text on a terminal and JSON otherwise (a container's output is collected by
something that parses it). `USAGEGRAPH_LOG_LEVEL` sets the level.

Every record written during a request carries that request's id (`request_id`, the value of
its `X-Request-Id`), so an error's stack trace, kept here and never sent to the client, is
found from the id the client reports. Every line is redacted on its way out: JWTs, API keys,
bearer credentials, the credential headers and database passwords never reach the output,
whoever logged them.

`uvicorn_log_config` hands the same configuration to uvicorn, which applies it in the
`serve` process and again in each worker it starts.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from usagegraph.observability.request_record import current_request_id

ACCESS_LOGGER = "usagegraph.access"
REDACTED = "[REDACTED]"
# Fields the text format appends as key=value (method, route, status and duration are in
# the access line's message already).
TEXT_FIELDS = (
    "request_id",
    "principal_kind",
    "principal_id",
    "graphql_operation",
    "sql_statements",
)

_SECRETS = (
    # A JWT anywhere (three base64url parts, the first a JSON header).
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # An API key of ours.
    (re.compile(r"ug_live_[A-Za-z0-9_-]+"), REDACTED),
    # Whatever follows `Bearer`.
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;}]+"), r"\1 " + REDACTED),
    # The credential headers, as `name: value`, `name=value` or JSON `"name": "value"`.
    (
        re.compile(
            r"(?i)\b(authorization|x-access-token|x-api-key|api_key|jwt_secret|password)"
            r"([\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])(?!bearer\b)[^\s\"',;}]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # The password of a URL (`postgresql://user:secret@host`).
    (re.compile(r"(://[^/\s:@\"']+):[^@\s\"']+@"), r"\1:" + REDACTED + "@"),
)


def redact(text: str) -> str:
    """`text` with every credential we know the shape of replaced by [REDACTED]."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request's id (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class RedactedJsonFormatter(JsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the request
    id, any extra fields, and the stack trace of an error; credentials redacted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactedTextFormatter(logging.Formatter):
    """`time level logger [request id] message`, the access line's fields as key=value;
    credentials redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in TEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        if fields:
            first, newline, rest = text.partition("\n")
            text = f"{first} {' '.join(fields)}{newline}{rest}"
        return redact(text)


def resolved_format(log_format: str | None) -> str:
    """`json` or `text`; unset: text when standard error is a terminal, JSON otherwise."""
    if log_format is not None:
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def logging_config(log_format: str | None, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process (uvicorn's loggers included:
    they hand their records to the root, so they are formatted and redacted alike)."""
    formatter = (
        RedactedJsonFormatter if resolved_format(log_format) == "json" else RedactedTextFormatter
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"usagegraph": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "usagegraph",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers are replaced by the root's.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Our access line replaces uvicorn's (which has no request id, route or caller).
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure_logging(log_format: str | None, level: str) -> None:
    """Apply `logging_config` to this process (the CLI's own commands)."""
    import logging.config

    logging.config.dictConfig(logging_config(log_format, level))


def log_access(
    *,
    request_id: str,
    method: str,
    route: str,
    status: int,
    seconds: float,
    principal_kind: str,
    principal_id: str | None,
    graphql_operation: str | None,
    sql_statements: int,
) -> None:
    """The one access-log line of a request (INFO on `usagegraph.access`)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 2)
    logger.info(
        "%s %s %s %.2fms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "principal_kind": principal_kind,
            "principal_id": principal_id,
            "graphql_operation": graphql_operation,
            "sql_statements": sql_statements,
        },
    )
