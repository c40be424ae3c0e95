"""Database outages: every route answers 503 in its family's envelope, never 500 or a hang;
/readyz fails meanwhile; the service recovers by itself when the database is back.

PostgreSQL is reached through a TCP proxy started by the test, so an outage is real (refused
connections, connections cut mid-session, a server that stops answering) without touching the
machine's PostgreSQL, which other tests use concurrently. For SQLite, an outage is the
database file becoming unreachable (its directory disappears), with no connection kept open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.cli.running import cli_env, serving
from tests.conftest import FIXED_NOW, TEST_JWT_SECRET
from tests.databases import TestDatabase
from tests.fixtures.factories import add_institution, add_user
from usagegraph.app import create_app
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import Caller
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import ClientBucket
from usagegraph.outages import recording, watch_engine
from usagegraph.settings import Settings

ACME = "65f1c0ffee0000000000000a"
BUCKET = "acme-main"
DOWN_MESSAGE = "The database is temporarily unavailable; try again shortly"
TIMEOUT_MESSAGE = "The request took too long and was cancelled; try again later"
VIEWER = {"query": "{ viewer { kind userId email } }"}


# --- a TCP proxy in front of PostgreSQL, run on its own thread and event loop ---


class DatabaseProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL until told to refuse or to stall.

    It runs on a thread of its own so that blocking test code (a server subprocess starting,
    synchronous HTTP calls) never stops it from forwarding.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._flowing: asyncio.Event | None = None
        self.port = 0

    def __enter__(self) -> DatabaseProxy:
        self._thread.start()
        self._call(self._create_event)
        self.accept()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.refuse()
        self._call(self._cancel_forwarding)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def accept(self) -> None:
        """Listen (on the same port as before) and forward in both directions."""
        self._call(self._accept)

    def refuse(self) -> None:
        """Stop listening (connections are refused) and cut every open connection."""
        self._call(self._refuse)

    def stall(self) -> None:
        """Keep connections open but forward nothing: a database that stopped answering."""
        self._call(self._set_flowing, False)

    def resume(self) -> None:
        self._call(self._set_flowing, True)

    def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(fn(*args), self._loop)
        return future.result(timeout=10)

    async def _create_event(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _cancel_forwarding(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, upstream_writer.transport}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._transports.discard(writer.transport)


# --- a database that can be taken away, per backend ---


class Outage:
    """Takes the database away from an app and gives it back."""

    url: URL

    async def begin(self, app: Starlette | None) -> None: ...

    async def end(self) -> None: ...


class PostgresOutage(Outage):
    def __init__(self, proxy: DatabaseProxy, url: URL) -> None:
        self._proxy = proxy
        self.url = url.set(host="127.0.0.1", port=proxy.port)

    async def begin(self, app: Starlette | None) -> None:
        await asyncio.to_thread(self._proxy.refuse)

    async def end(self) -> None:
        await asyncio.to_thread(self._proxy.accept)


class SqliteOutage(Outage):
    """A copy of the test database in a directory that is renamed away and back."""

    def __init__(self, source: URL, directory: Path) -> None:
        self._directory = directory
        self._away = directory.with_name(directory.name + "-away")
        directory.mkdir()
        target = directory / "usagegraph.sqlite3"
        with sqlite3.connect(source.database or "") as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        self.url = source.set(database=str(target))

    async def begin(self, app: Starlette | None) -> None:
        self._directory.rename(self._away)
        if app is not None:  # open connections would keep the file; none are open any more
            await app.state.engine.dispose()

    async def end(self) -> None:
        self._away.rename(self._directory)


@dataclasses.dataclass(frozen=True)
class World:
    user_id: int
    token: str
    api_key: str


async def _seed(engine: AsyncEngine) -> World:
    """A member of Acme with a token, and an API key of Acme with a client bucket."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    user_id = await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"})
    async with session_factory(engine)() as session, session.begin():
        session.add(ClientBucket(id=BUCKET, institution_id=ACME))
        _row, key = await create_api_key(session, ACME)
    return World(user_id, mint_token(user_id, TEST_JWT_SECRET), key)


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await _seed(engine)


@pytest.fixture
def outage(database: TestDatabase, world: World, tmp_path: Path) -> Iterator[Outage]:
    """The seeded test database, behind something that can take it away."""
    if database.backend == "sqlite":
        yield SqliteOutage(database.url, tmp_path / "db")
        return
    with DatabaseProxy(database.url.host or "127.0.0.1", database.url.port or 5432) as proxy:
        yield PostgresOutage(proxy, database.url)


@pytest.fixture
async def outage_app(settings: Settings, outage: Outage) -> AsyncIterator[Starlette]:
    app = create_app(
        dataclasses.replace(settings, database_url=outage.url), clock=lambda: FIXED_NOW
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(outage_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=outage_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# --- one request per route family, and the 503 each must answer ---


@dataclasses.dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None


def _calls(world: World) -> dict[str, Call]:
    bearer = {"Authorization": f"Bearer {world.token}"}
    return {
        "user": Call(
            "GET", "/api/user/usage-history?instanceId=personal", {"x-access-token": world.token}
        ),
        "admin": Call(
            "POST", "/api/admin/histories/charts/user-stats", {"x-access-token": world.token}, {}
        ),
        "account": Call("GET", "/auth/account/credits", bearer),
        "billing": Call("GET", "/v1/billing/usage-history", {"X-API-Key": world.api_key}),
        "clients": Call("GET", f"/api/v1/clients/{BUCKET}/history", {"X-API-Key": world.api_key}),
        "graphql": Call("POST", "/graphql", bearer, VIEWER),
    }


def _unavailable_body(family: str, request_id: str, message: str = DOWN_MESSAGE) -> dict:
    """The documented envelope of each family, with code SERVICE_UNAVAILABLE where it has one."""
    if family in ("user", "admin"):
        return {"success": False, "message": message}
    if family == "clients":
        return {"error": message, "request_id": request_id}
    if family == "graphql":
        extensions = {"code": "SERVICE_UNAVAILABLE", "requestId": request_id}
        return {"errors": [{"message": message, "extensions": extensions}]}
    return {
        "error": {"code": "SERVICE_UNAVAILABLE", "message": message},
        "meta": {"request_id": request_id},
    }


async def _send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    return await client.request(call.method, call.path, headers=call.headers, json=call.json)


async def _assert_serving(client: httpx.AsyncClient, world: World) -> None:
    for family, call in _calls(world).items():
        response = await _send(client, call)
        assert response.status_code < 500, (family, response.status_code, response.text)
    assert (await client.get("/readyz")).status_code == 200


async def test_every_route_answers_503_in_its_envelope_and_recovers(
    http: httpx.AsyncClient, outage_app: Starlette, outage: Outage, world: World
) -> None:
    await _assert_serving(http, world)
    await outage.begin(outage_app)
    try:
        for family, call in _calls(world).items():
            started = time.monotonic()
            response = await _send(http, call)
            assert time.monotonic() - started < 5, family  # an answer, not a hang
            request_id = response.headers["x-request-id"]
            assert (response.status_code, response.json()) == (
                503,
                _unavailable_body(family, request_id),
            ), family
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
        assert (await http.get("/healthz")).status_code == 200  # the process itself is fine
    finally:
        await outage.end()
    await _assert_serving(http, world)  # nothing restarted: the pool reconnects by itself


async def test_callers_resolved_without_the_database_are_served_during_an_outage(
    http: httpx.AsyncClient, outage_app: Starlette, outage: Outage
) -> None:
    """Only what needs the database fails: an anonymous viewer and the OpenAPI document don't."""
    await outage.begin(outage_app)
    try:
        viewer = await http.post("/graphql", json=VIEWER)
        assert viewer.status_code == 200
        assert viewer.json()["data"]["viewer"] == {
            "kind": "ANONYMOUS",
            "userId": None,
            "email": None,
        }
        assert (await http.get("/openapi.json")).status_code == 200
    finally:
        await outage.end()


async def test_an_outage_met_inside_the_graph_is_a_503_not_an_error_in_a_200(
    http: httpx.AsyncClient,
    outage_app: Starlette,
    outage: Outage,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller is resolved without the database here, so the first read to fail is the
    viewer's email, inside GraphQL execution — which turns exceptions into `errors`."""
    resolved = Principal.for_user(world.user_id, "user", frozenset(), {ACME: "user"})

    async def resolve_without_database(*_args: object, **_kwargs: object) -> Caller:
        return Caller(resolved)

    monkeypatch.setattr("usagegraph.auth.middleware.resolve_caller", resolve_without_database)
    query = {"query": "{ viewer { email } }"}
    assert (await http.post("/graphql", json=query)).json() == {
        "data": {"viewer": {"email": "ada@acme.edu"}}
    }
    await outage.begin(outage_app)
    try:
        response = await http.post("/graphql", json=query)
    finally:
        await outage.end()
    request_id = response.headers["x-request-id"]
    assert (response.status_code, response.json()) == (
        503,
        _unavailable_body("graphql", request_id),
    )
    assert (await http.post("/graphql", json=query)).status_code == 200


# --- a real server: refused connections, cut connections, a database that stops answering ---


def _get(base: str, call: Call, timeout: float = 15) -> httpx.Response:
    return httpx.request(
        call.method, base + call.path, headers=call.headers, json=call.json, timeout=timeout
    )


def _statuses(base: str, world: World) -> dict[str, int]:
    return {family: _get(base, call).status_code for family, call in _calls(world).items()}


async def test_a_running_server_survives_postgresql_going_away_and_coming_back(
    database: TestDatabase, world: World, tmp_path: Path
) -> None:
    if database.backend != "postgresql":
        pytest.skip("SQLite is a file inside the server process: there is no network to lose")
    with DatabaseProxy(database.url.host or "127.0.0.1", database.url.port or 5432) as proxy:
        url = database.url.set(host="127.0.0.1", port=proxy.port)
        env = cli_env(
            tmp_path,
            url.render_as_string(hide_password=False),
            USAGEGRAPH_REQUEST_TIMEOUT_SECONDS="2",
        )
        await asyncio.to_thread(_outage_cycle, env, proxy, world)


def _outage_cycle(env: dict[str, str], proxy: DatabaseProxy, world: World) -> None:
    """Runs on a thread: the server starts through the proxy, then loses its database."""
    families = _calls(world)
    with serving(env) as base:
        healthy = _statuses(base, world)  # 200s, and the user-stats 403 of a non-admin
        assert all(status < 500 for status in healthy.values()), healthy

        proxy.refuse()  # connections cut, new ones refused
        for family, call in families.items():
            response = _get(base, call)
            expected = _unavailable_body(family, response.headers["x-request-id"])
            assert (response.status_code, response.json()) == (503, expected), family
        assert httpx.get(f"{base}/readyz").status_code == 503
        proxy.accept()
        assert _statuses(base, world) == healthy
        assert httpx.get(f"{base}/readyz").status_code == 200

        proxy.stall()  # connections stay open but nothing comes back
        for family, call in families.items():
            started = time.monotonic()
            response = _get(base, call)
            # The 2 s request budget ends the wait; a little more for the answer to travel.
            assert time.monotonic() - started < 4, family
            expected = _unavailable_body(family, response.headers["x-request-id"], TIMEOUT_MESSAGE)
            assert (response.status_code, response.json()) == (503, expected), family
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 503
        proxy.resume()
        _eventually(lambda: _statuses(base, world) == healthy)
        assert httpx.get(f"{base}/readyz").status_code == 200


def _eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.2)


async def test_a_cancelled_statement_is_not_recorded_as_an_outage(
    database: TestDatabase, engine: AsyncEngine
) -> None:
    """GraphQL cancels the siblings of a failed field, mid-statement; that cancellation must
    not turn the answer into a 503."""
    watched = create_engine(database.url)
    watch_engine(watched)
    slow = (
        "SELECT pg_sleep(5)"
        if database.backend == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 3000000) SELECT count(*) FROM c"  # about a second
    )

    async def run_slow() -> None:
        async with watched.connect() as connection:
            await connection.execute(text(slow))

    try:
        with recording() as record:
            task = asyncio.create_task(run_slow())
            await asyncio.sleep(0.3)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert record.met is None
    finally:
        await watched.dispose()
