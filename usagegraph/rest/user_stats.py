"""POST /api/admin/histories/charts/user-stats (seed 001): the per-user usage extract.

A thin shim: parse the JSON body into typed values, let `resolvers.user_stats` decide
everything, render the seed's field names. JSON by default; a client that asks for
`Accept: text/csv` gets the same rows as a CSV file. Errors use the legacy envelope
`{"success": false, "message": ...}`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.errors import UsageGraphError, invalid
from usagegraph.http.envelopes import legacy_error
from usagegraph.http.json import JSON, iso_timestamp
from usagegraph.input_ids import ascii_digits, id_or_none
from usagegraph.iso_dates import OutOfRange, parse_moment
from usagegraph.money import canonical_money
from usagegraph.resolvers.calendar import Granularity
from usagegraph.resolvers.request_context import context_of
from usagegraph.resolvers.user_stats import (
    NOT_USER_IDS,
    UserStats,
    UserStatsFilters,
    UserStatsRow,
    authorize_stats_caller,
    user_stats,
)
from usagegraph.shapes import render, shape_fields

PATH = "/api/admin/histories/charts/user-stats"
# The row fields, in the seed's order: the JSON keys and the CSV header alike.
# The seed's names of a row's fields, in the shape's order (CSV columns, JSON keys).
ROW_FIELDS = tuple(field.json_name for field in shape_fields(UserStatsRow))
# Free text a spreadsheet could take for a formula when it opens the CSV.
_TEXT_FIELDS = frozenset({"email", "fname", "lname", "instanceName", "aiName"})
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


# ---- request -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """The body, typed. Null and "" mean "not given" for every string field."""

    granularity: Granularity
    range_periods: int | None
    daterange: tuple[datetime, datetime] | None
    filters: UserStatsFilters


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object (all defaults)."""
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid("Request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    return value.strip() or None


def _granularity(body: dict[str, Any]) -> Granularity:
    value = _string(body, "granularity")
    if value is None:
        return Granularity.DAY
    try:
        return Granularity(value)
    except ValueError as exc:
        raise invalid("granularity must be one of day, week, month") from exc


def _range(body: dict[str, Any]) -> int | None:
    """An integer (the resolver checks it is negative); JSON floats and booleans are not."""
    value = body.get("range")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("range must be a negative integer")
    return value


def _daterange(body: dict[str, Any]) -> tuple[datetime, datetime] | None:
    value = body.get("daterange")
    if value is None:
        return None
    message = "daterange must be an object with ISO 8601 start and end"
    if not isinstance(value, dict):
        raise invalid(message)
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        raise invalid(message)
    try:
        return parse_moment(start), parse_moment(end)
    except OutOfRange as exc:
        raise invalid(f"daterange start and end {exc}") from exc
    except ValueError as exc:
        raise invalid(message) from exc


def _accounts(body: dict[str, Any]) -> frozenset[int] | None:
    """Space-separated user ids, each by the id rule of `input_ids`."""
    value = _string(body, "account")
    if value is None:
        return None
    tokens = value.split()
    if not all(ascii_digits(token) for token in tokens):
        raise invalid("account must hold space-separated integer user ids")
    ids = [id_or_none(token) for token in tokens]
    if None in ids:
        raise invalid(NOT_USER_IDS)
    return frozenset(user_id for user_id in ids if user_id is not None)


def _institutions(body: dict[str, Any]) -> frozenset[str] | None:
    value = _string(body, "institution")
    return frozenset(value.split()) if value is not None else None


def parse_body(raw: bytes) -> StatsRequest:
    """Typed values from the raw body; INVALID_REQUEST for anything malformed."""
    body = _json_object(raw)
    return StatsRequest(
        granularity=_granularity(body),
        range_periods=_range(body),
        daterange=_daterange(body),
        filters=UserStatsFilters(
            accounts=_accounts(body),
            instances=_institutions(body),
            role=_string(body, "role"),
            search=_string(body, "usersearch"),
        ),
    )


def wants_csv(accept: str) -> bool:
    """True when Accept names text/csv with a higher q than application/json.

    Equal q: whichever is listed first wins. Wildcards (`*/*`) and no header mean JSON.
    """
    best: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(",")):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, number = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        best.setdefault(media.lower(), (quality, -position))
    csv_quality = best.get("text/csv", (0.0, 0))
    json_quality = best.get("application/json", (0.0, 0))
    return csv_quality[0] > 0 and csv_quality > json_quality


# ---- response ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _period_text(start: datetime) -> str:
    """A period start as the rows spell it; thousands of rows share a few hundred starts."""
    return iso_timestamp(start, milliseconds=False)


def _row_values(row: UserStatsRow) -> tuple[Any, ...]:
    """A row's values in ROW_FIELDS order."""
    return (
        str(row.user_id),
        row.email,
        row.fname,
        row.lname,
        row.institution_id,
        row.instance_name,
        row.ai_name,
        _period_text(row.period_start),
        row.query_count,
        row.credits_used,
        row.lifetime_used,
        row.cap_limit,
        row.cap_used_pct,
        row.at_cap,
    )


def render_json(stats: UserStats) -> dict[str, Any]:
    window = stats.window
    return {
        "success": True,
        "granularity": stats.granularity.value,
        "truncated": stats.truncated,
        "windowSource": window.source.value,
        "defaultDaysApplied": window.default_days,
        "windowStart": iso_timestamp(window.start, milliseconds=False),
        "windowEnd": iso_timestamp(window.end, milliseconds=False),
        "data": [dict(zip(ROW_FIELDS, _row_values(row), strict=True)) for row in stats.rows],
        "summary": render(stats.summary),
    }


def _csv_cell(field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(canonical_money(value), "f")
    text = str(value)
    if field in _TEXT_FIELDS and text.startswith(_FORMULA_TRIGGERS):
        return "'" + text  # shown as text, never evaluated as a formula
    return text


def render_csv(stats: UserStats) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ROW_FIELDS)
    for row in stats.rows:
        writer.writerow(
            _csv_cell(field, value)
            for field, value in zip(ROW_FIELDS, _row_values(row), strict=True)
        )
    return buffer.getvalue()


def _csv_response(stats: UserStats) -> Response:
    """The rows as CSV; what the JSON envelope says besides them travels in headers."""
    return Response(
        render_csv(stats).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="user-stats.csv"',
            "X-Truncated": "true" if stats.truncated else "false",
            "X-Window-Source": stats.window.source.value,
            "X-Window-Start": iso_timestamp(stats.window.start, milliseconds=False),
            "X-Window-End": iso_timestamp(stats.window.end, milliseconds=False),
        },
    )


async def user_stats_endpoint(request: Request) -> Response:
    principal = context_of(request).principal
    try:
        authorize_stats_caller(principal)  # 401/403 before any complaint about the body
        parsed = parse_body(await request.body())
        stats = await user_stats(
            context_of(request),
            granularity=parsed.granularity,
            range_periods=parsed.range_periods,
            daterange=parsed.daterange,
            filters=parsed.filters,
        )
    except UsageGraphError as error:
        return legacy_error(error)
    if wants_csv(request.headers.get("accept", "")):
        return _csv_response(stats)
    return JSON(render_json(stats))


routes: list[BaseRoute] = [Route(PATH, user_stats_endpoint, methods=["POST"])]
