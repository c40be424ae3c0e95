"""POST /v1/events: usage as CloudEvents, one, a batch, or NDJSON (docs/api-reference.md).

The HTTP side only: the credential (401), the content type (415), the limits (413: more
bytes than USAGEGRAPH_MAX_BODY_BYTES, more events than USAGEGRAPH_MAX_EVENTS_PER_REQUEST)
and the answer. Decoding, the mapping and the write are `resolvers.cloud_events`.

The body is read here, not by the body-limit middleware (`http.body_limit.STREAMED_PATHS`):
NDJSON is decoded line by line as it arrives and written in transactions of 1,000, so a
backfill never sits in memory whole. A 200 means every accepted event is committed; an error
answer (413 midway, 503) may follow committed chunks, and resending the same request is then
safe: the ids make the replayed events duplicates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.auth.challenge import authentication_error
from usagegraph.auth.principal import Principal
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.http.envelopes import coded_error
from usagegraph.http.json import JSON
from usagegraph.resolvers.cloud_events import EventsAnswer, EventWriter, split_batch
from usagegraph.resolvers.request_context import context_of

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
NDJSON = "application/x-ndjson"
MEDIA_TYPES = (SINGLE, BATCH, NDJSON)


class _TooLarge(UsageGraphError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PAYLOAD_TOO_LARGE, message)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _bytes_over(limit: int) -> _TooLarge:
    return _TooLarge(f"The request body is larger than {limit} bytes (USAGEGRAPH_MAX_BODY_BYTES)")


def _events_over(limit: int) -> _TooLarge:
    return _TooLarge(
        f"The request holds more than {limit} events (USAGEGRAPH_MAX_EVENTS_PER_REQUEST); "
        "send them in several requests"
    )


async def _chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; 413 once more than `limit` bytes were declared or received."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _bytes_over(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _bytes_over(limit)
        yield chunk


async def _whole(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _chunks(request, limit)])


async def _write_ndjson(request: Request, writer: EventWriter, limits: tuple[int, int]) -> None:
    """Feed each non-blank line to the writer as soon as it is complete."""
    max_bytes, max_events = limits
    index = 0
    rest = b""
    async for chunk in _chunks(request, max_bytes):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                if index >= max_events:
                    raise _events_over(max_events)
                await writer.add(index, line)
                index += 1
    if rest.strip():
        if index >= max_events:
            raise _events_over(max_events)
        await writer.add(index, rest)


def answer_json(answer: EventsAnswer, request_id: str) -> dict[str, object]:
    return {
        "inserted": answer.inserted,
        "duplicates": answer.duplicates,
        "refused": answer.refused,
        "refusals": [
            {"index": r.index, "id": r.id, "code": r.code.value, "message": r.message}
            for r in answer.refusals or ()
        ],
        "meta": {"request_id": request_id},
    }


def _unauthorized(request: Request, principal: Principal) -> Response:
    """The 401 of a caller without a usable credential; the principal goes on the request's
    state, where the challenge middleware reads what to say in WWW-Authenticate."""
    request.state.principal = principal
    return coded_error(authentication_error(principal, "Invalid or missing API key"), request)


async def post_events(request: Request) -> Response:
    context = context_of(request)
    settings = context.settings
    if not context.principal.is_authenticated:
        return _unauthorized(request, context.principal)
    media_type = _media_type(request)
    try:
        if media_type not in MEDIA_TYPES:
            raise UsageGraphError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be one of {', '.join(MEDIA_TYPES)}",
            )
        writes = request.app.state.usage_writes  # the process's group commit (app.py)
        writer = EventWriter(writes, context.principal, context.now, settings)
        limits = (settings.max_body_bytes, settings.max_events_per_request)
        if media_type == NDJSON:
            await _write_ndjson(request, writer, limits)
        else:
            body = await _whole(request, settings.max_body_bytes)
            raws = [body] if media_type == SINGLE else split_batch(body)
            if len(raws) > settings.max_events_per_request:
                raise _events_over(settings.max_events_per_request)
            for index, raw in enumerate(raws):
                await writer.add(index, raw)
        answer = await writer.finish()
    except UsageGraphError as error:
        if error.code is ErrorCode.UNAUTHORIZED:  # the write found the key revoked since
            return _unauthorized(request, Principal.anonymous(rejection="revoked API key"))
        headers = {"Connection": "close"} if isinstance(error, _TooLarge) else None
        response = coded_error(error, request)
        if headers:
            response.headers.update(headers)
        return response
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it
    return JSON(answer_json(answer, request.state.request_id))


routes: list[BaseRoute] = [Route("/v1/events", post_events, methods=["POST"])]
