"""The `usagegraph` command: serve, migrate, import, send, demo, token, apikey, rollups,
partitions."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import exists, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import DEFAULT_TTL_SECONDS, check_ttl, mint_token
from usagegraph.cli_help import PlainHelpCommand, PlainHelpGroup, epilog
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import Institution, User
from usagegraph.db.schema_version import SchemaBehindError, ensure_schema, upgrade_to_head
from usagegraph.events_client import (
    DEFAULT_ATTEMPTS,
    DEFAULT_CHUNK_EVENTS,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_URL,
    FIRST_PAUSE_SECONDS,
    MAX_PAUSE_SECONDS,
    Summary,
)
from usagegraph.http.worker_sockets import listening_socket, worker_sockets
from usagegraph.observability.logs import configure_logging, logging_config
from usagegraph.observability.metrics_directory import multiprocess_directory
from usagegraph.observability.tracing import TracingConfigError, check_tracing_environment
from usagegraph.settings import (
    DATA_DIR_VAR,
    DATABASE_URL_VAR,
    JWT_SECRET_VAR,
    VARIABLES,
    Settings,
    SettingsError,
)

# What each command's help lists under "Environment": the variables that change what it
# does. Every command but the exports also validates all the others (Settings.from_env).
DATABASE = (DATABASE_URL_VAR, DATA_DIR_VAR)
EVENT_AGE = "USAGEGRAPH_EVENT_MAX_AGE_DAYS"
TOKEN_VARIABLES = (
    JWT_SECRET_VAR,
    "USAGEGRAPH_JWT_KEYS",
    "USAGEGRAPH_JWT_SIGNING_KID",
    "USAGEGRAPH_JWT_ISSUER",
    "USAGEGRAPH_JWT_AUDIENCE",
    "USAGEGRAPH_JWT_MAX_TTL_SECONDS",
)
CHECKED = (
    f"Without {DATABASE_URL_VAR}: the embedded SQLite file in {DATA_DIR_VAR} "
    "(~/.local/share/usagegraph by default). Every other USAGEGRAPH_* variable is checked "
    "too; the README's Configuration table says what each means."
)
# The client commands read these instead: where the server is and the credential to send.
CLIENT_VARIABLES = ("USAGEGRAPH_URL", "USAGEGRAPH_API_KEY")

app = typer.Typer(
    cls=PlainHelpGroup,
    help="usagegraph: a GraphQL usage-and-billing gateway with REST shims.",
    epilog=epilog(
        ["usagegraph serve --workers 4", "usagegraph token --user 1"],
        (*DATABASE, JWT_SECRET_VAR),
        "Each command's --help lists the variables it reads; the README's Configuration "
        "table lists them all.",
    ),
    no_args_is_help=True,
    add_completion=False,
)
apikey_app = typer.Typer(
    cls=PlainHelpGroup,
    help="Manage institution API keys.",
    epilog=epilog(["usagegraph apikey create --institution 65f1c0ffee0000000000000a"], DATABASE),
    no_args_is_help=True,
)
app.add_typer(apikey_app, name="apikey")
partitions_app = typer.Typer(
    cls=PlainHelpGroup,
    help="Monthly partitions of the usage events (PostgreSQL).",
    epilog=epilog(
        ["usagegraph partitions list", "usagegraph partitions detach 2025-01"],
        (*DATABASE, EVENT_AGE),
    ),
    no_args_is_help=True,
)
app.add_typer(partitions_app, name="partitions")
rollups_app = typer.Typer(
    cls=PlainHelpGroup,
    help="Maintain the usage rollups.",
    epilog=epilog(["usagegraph rollups rebuild"], DATABASE),
    no_args_is_help=True,
)
app.add_typer(rollups_app, name="rollups")

log = logging.getLogger("usagegraph.serve")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
# Connections the kernel queues for the workers (uvicorn's default too).
LISTEN_BACKLOG = 2048


def _print_version(value: bool) -> None:
    """`--version`: the installed version, for bug reports and deployment checks."""
    if value:
        from usagegraph import __version__

        print(f"usagegraph {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """usagegraph: a GraphQL usage-and-billing gateway with REST shims."""


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc), code=2)


def _run_with_database(
    settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]], *, check_schema: bool = True
) -> T:
    """Open the database, check (or, for the embedded default, apply) its schema, run `work`."""

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            if check_schema:
                await ensure_schema(engine, migrate=settings.embedded_database)
            return await work(engine)
        finally:
            await engine.dispose()

    where = settings.database_url.render_as_string(hide_password=True)
    try:
        return asyncio.run(run())
    except SchemaBehindError as exc:
        _fail(str(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(f"cannot use the database at {where}: {type(exc).__name__}: {exc}".splitlines()[0])


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(
        ["usagegraph worker"],
        (
            *DATABASE,
            "USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE",
            "USAGEGRAPH_WEBHOOKS_RETRY_BASE_MS",
            "USAGEGRAPH_WEBHOOKS_MAX_ATTEMPTS",
            "USAGEGRAPH_WEBHOOKS_POLL_MS",
            "USAGEGRAPH_WEBHOOKS_TIMEOUT_SECONDS",
            "USAGEGRAPH_WEBHOOKS_LEASE_SECONDS",
        ),
        CHECKED,
    ),
)
def worker() -> None:
    """Deliver webhooks, and release expired reservations, until stopped (Ctrl-C, SIGTERM).
    Every `serve` worker also runs a deliverer (unless USAGEGRAPH_WEBHOOKS_DELIVER=false);
    all of them share one database lease, so whichever holds it sends and the others wait:
    run this to deliver from a process of its own, e.g. with USAGEGRAPH_WEBHOOKS_DELIVER=false
    on the servers."""
    import signal

    from usagegraph.clock import system_clock
    from usagegraph.db.engine import session_factory
    from usagegraph.resolvers.wallet_operations import keep_expiring_reservations
    from usagegraph.webhooks.deliverer import Deliverer

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)

    async def work(engine: AsyncEngine) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("usagegraph worker delivering webhooks")
        sessions = session_factory(engine)
        await asyncio.gather(
            Deliverer(sessions, settings.webhooks).run(stop),
            keep_expiring_reservations(sessions, system_clock, stop),
        )

    _run_with_database(settings, work)


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(
        [
            "usagegraph serve --port 8000",
            "usagegraph serve --host 0.0.0.0 --port 8080 --workers 4",
            "usagegraph serve --port 0        (any free port; the log says which)",
        ],
        (*VARIABLES, "PROMETHEUS_MULTIPROC_DIR"),
        "The README's Configuration table says what each means.",
    ),
)
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Worker processes sharing the port (each has its own connection pool, and "
            "its own in-process cache and rate limiter unless USAGEGRAPH_REDIS_URL is set).",
        ),
    ] = 1,
) -> None:
    """Serve /graphql, the REST shims and the health probes with uvicorn (uvloop, httptools)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings = _settings()
    try:
        check_tracing_environment(os.environ)  # OTEL_*: observability/tracing.py
    except TracingConfigError as exc:
        _fail(escape(str(exc)), code=2)

    async def check(_engine: AsyncEngine) -> None:
        return None

    _run_with_database(settings, check)  # refuse to start on a schema that is behind
    configure_logging(settings.log_format, settings.log_level)
    # Bound and listening before anything says "serving": a port another process holds is a
    # one-line error here, not a traceback in a worker after the announcement.
    with contextlib.ExitStack() as held:
        try:
            sockets = held.enter_context(listening_sockets(host, port, workers))
        except OSError as exc:
            _fail(cannot_listen_message(host, port, exc))
        # A log line, not a print: in JSON mode every line of a server's output is JSON. The
        # port is the bound one, so `--port 0` (any free port) says which it got.
        log.info("usagegraph serving on %s/graphql", _base_url(host, sockets[0].getsockname()[1]))
        if workers > 1 and settings.redis_url is None and settings.backend != "postgresql":
            log.warning(
                "live updates (GraphQL subscriptions) reach only the subscribers of the worker "
                "that wrote: with %d workers on SQLite, set USAGEGRAPH_REDIS_URL to share them",
                workers,
            )
        # A factory path, not an app object: every worker process builds its own app (and
        # engine) from the same environment, metrics directory included.
        held.enter_context(multiprocess_directory(workers))
        config = uvicorn.Config(
            "usagegraph.app:create_app", **uvicorn_options(settings, host, port, workers)
        )
        if workers > 1:
            # uvicorn's own supervisor, handed our sockets: each worker accepts on the one it
            # claims (http/worker_sockets.py); the supervisor restarts a worker that dies.
            Multiprocess(config, sockets=sockets).run()
            return
        server = uvicorn.Server(config)
        server.run(sockets=sockets)
        if not server.started:
            raise typer.Exit(3)  # the app failed to start (uvicorn has logged why)


def listening_sockets(
    host: str, port: int, workers: int
) -> contextlib.AbstractContextManager[list[socket.socket]]:
    """The sockets `serve` listens on: one for one worker; for several, one per worker with
    SO_REUSEPORT, so that the kernel spreads the connections (http/worker_sockets.py)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if workers > 1:
        return worker_sockets(address, family, kind, proto, workers, LISTEN_BACKLOG)
    return _closing_all([listening_socket(address, family, kind, proto, LISTEN_BACKLOG)])


@contextlib.contextmanager
def _closing_all(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def cannot_listen_message(host: str, port: int, exc: OSError) -> str:
    """One line saying why `serve` cannot have host:port, and what to do about it."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use; stop whatever holds it "
            "or pick another --port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
            "pick another --port"
        )
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host!r} is not an address of this machine; check --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    """How `serve` runs uvicorn, for an app factory given by its import path."""
    return {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level.lower(),
        # Our configuration (observability/logs.py) in the serve process and every worker;
        # the access line is ours too (http/request_telemetry.py), with what uvicorn's lacks.
        "log_config": logging_config(settings.log_format, settings.log_level),
        "access_log": False,
        # Open requests get this long after SIGTERM; the loop watchdog ends a worker that
        # still has not stopped some seconds later (http/loop_watchdog.py).
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_seconds),
    }


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(
        [
            "export USAGEGRAPH_DATABASE_URL=postgresql://app@db.internal/usagegraph",
            "usagegraph migrate",
        ],
        (*DATABASE, EVENT_AGE),
        CHECKED,
    ),
)
def migrate() -> None:
    """Bring the configured database's schema up to date."""
    settings = _settings()

    async def work(engine: AsyncEngine) -> str:
        from usagegraph.db.partitions import maintain_partitions

        status = await upgrade_to_head(engine)
        await maintain_partitions(engine, history=settings.event_window.max_age)
        return status.head

    head = _run_with_database(settings, work, check_schema=False)
    out.print(f"database schema is at revision {head} (up to date)", highlight=False)


@app.command(
    "import",
    cls=PlainHelpCommand,
    epilog=epilog(
        ["usagegraph import tests/data/every_kind.ndjson"],
        (*DATABASE, EVENT_AGE, "USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS"),
        CHECKED,
    ),
)
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An NDJSON file.")],
) -> None:
    """Load an NDJSON file in one transaction: all of it, or nothing."""
    from usagegraph.importer import ImportFileError, ImportSummary, import_file

    settings = _settings()
    total = sum(1 for _ in file.open(encoding="utf-8"))

    async def work(engine: AsyncEngine) -> ImportSummary:
        with _progress() as progress:
            task = progress.add_task("importing", total=total)
            return await import_file(
                engine,
                file,
                lambda n: progress.update(task, completed=n),
                window=settings.event_window,
            )

    try:
        summary = _run_with_database(settings, work)
    except ImportFileError as exc:
        _fail(f"{file}: {exc} — nothing was imported")
    written = ", ".join(f"{count} {kind}" for kind, count in sorted(summary.written.items()))
    out.print(f"imported {written or 'nothing'}", highlight=False)
    if summary.duplicate_usage:
        out.print(
            f"skipped {summary.duplicate_usage} usage line(s) whose idempotency_key was "
            "already recorded",
            highlight=False,
        )


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(
        ["usagegraph send events.ndjson --url http://usage.example:8000"],
        CLIENT_VARIABLES,
        "USAGEGRAPH_API_KEY stands for --api-key, USAGEGRAPH_URL for --url.",
    ),
)
def send(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            metavar="FILE",
            help="CloudEvents: NDJSON (one per line) or a JSON array (a CloudEvents batch).",
        ),
    ],
    url: Annotated[
        str,
        typer.Option(envvar="USAGEGRAPH_URL", metavar="URL", help="The server's base address."),
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="USAGEGRAPH_API_KEY",
            metavar="KEY",
            help="The institution's API key (a super user's JWT works too).",
            show_default=False,
        ),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Most events per request (the server's limit is 10,000)."
        ),
    ] = DEFAULT_CHUNK_EVENTS,
    attempts: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Attempts per chunk on connection errors, timeouts, 429 and 5xx, with pauses "
            f"doubling from {FIRST_PAUSE_SECONDS} s up to {MAX_PAUSE_SECONDS:.0f} s.",
        ),
    ] = DEFAULT_ATTEMPTS,
    timeout: Annotated[
        float, typer.Option(min=1, metavar="SECONDS", help="Seconds to wait for each answer.")
    ] = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Send usage events from a file to a server's POST /v1/events, in chunks.

    The file is streamed, never read whole. A chunk left without an
    answer (connection refused or reset, timeout, 429, 5xx) is sent again
    with the same ids: events it had recorded come back as duplicates, so
    running the command again after a failure is safe too. Any other 4xx
    stops the run with the server's message.

    Prints the sum of the server's answers (inserted, duplicates,
    refused); exits with 1 if any event was refused or a chunk failed.
    """
    from usagegraph.events_client import SendError, send_file

    if not api_key:
        _fail("no API key: pass --api-key or set USAGEGRAPH_API_KEY", code=2)
    total = file.stat().st_size
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    summary: Summary | None = None
    failure: str | None = None
    with progress:
        task = progress.add_task("sending", total=total or 1, events=0)
        try:
            summary = send_file(
                file,
                url,
                api_key,
                chunk_events=chunk_size,
                attempts=attempts,
                timeout=timeout,
                on_chunk=lambda chunk, done: progress.update(
                    task, completed=chunk.read_bytes, events=done.events
                ),
                on_retry=lambda retry: progress.console.print(
                    f"retrying {retry.chunk.span()} in {retry.pause:.1f} s "
                    f"(attempt {retry.attempt} of {attempts} failed: {retry.reason})",
                    highlight=False,
                    markup=False,
                ),
            )
            progress.update(task, completed=total or 1)
        except SendError as error:
            summary = error.summary
            failure = str(error)
    if summary is not None:
        _report_sent(summary)
    if failure is not None:
        _fail(
            f"{failure}. The events before it are recorded; running the same command again "
            "is safe (their ids make them duplicates)."
        )
    if summary is not None and summary.refused:
        raise typer.Exit(1)


_SHOWN_REFUSALS = 20


def _report_sent(summary: Summary) -> None:
    """The sum of the answers on stdout, the refusals (the first few) on stderr."""
    for refusal in summary.refusals[:_SHOWN_REFUSALS]:
        err.print(f"refused: {refusal.describe()}", highlight=False, markup=False)
    hidden = len(summary.refusals) - _SHOWN_REFUSALS
    if hidden > 0:
        err.print(f"... and {hidden} more refused", highlight=False)
    retried = f", {summary.retries} retried request(s)" if summary.retries else ""
    out.print(
        f"sent {summary.events} events in {summary.requests} request(s){retried}: "
        f"{summary.inserted} inserted, {summary.duplicates} duplicate(s), "
        f"{summary.refused} refused",
        highlight=False,
    )


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph token --user 7 --ttl 600"], (*DATABASE, *TOKEN_VARIABLES), CHECKED),
)
def token(
    user: Annotated[
        int, typer.Option("--user", metavar="ID", help="The user id the token identifies.")
    ],
    ttl: Annotated[
        int,
        typer.Option(
            metavar="SECONDS",
            help="Seconds until it expires (at most USAGEGRAPH_JWT_MAX_TTL_SECONDS, a day by "
            "default).",
            min=1,
        ),
    ] = DEFAULT_TTL_SECONDS,
) -> None:
    """Print a JWT for a user, signed with the configured secret.

    With USAGEGRAPH_JWT_SIGNING_KID set it is signed with that key and names it (`kid`); with
    USAGEGRAPH_JWT_ISSUER / _AUDIENCE set it carries `iss` / `aud`.
    """
    settings = _settings()
    try:
        check_ttl(ttl, settings.tokens)
    except ValueError as exc:
        _fail(f"--ttl {ttl}: {exc}", code=2)

    async def work(engine: AsyncEngine) -> bool:
        async with session_factory(engine)() as session:
            return await session.get(User, user) is not None

    if not _run_with_database(settings, work):
        _fail(f"user {user} does not exist")
    print(mint_token(user, settings.jwt_secret, ttl, settings.tokens))


@apikey_app.command(
    "create",
    cls=PlainHelpCommand,
    epilog=epilog(
        ["usagegraph apikey create --institution 65f1c0ffee0000000000000a --name ci"],
        DATABASE,
        CHECKED,
    ),
)
def apikey_create(
    institution: Annotated[
        str, typer.Option(metavar="ID", help="The institution the key acts for.")
    ],
    name: Annotated[str | None, typer.Option(help="A label to tell keys apart.")] = None,
) -> None:
    """Create an API key and print it. It is shown only this once."""
    settings = _settings()

    async def work(engine: AsyncEngine) -> str | None:
        async with session_factory(engine)() as session, session.begin():
            if await session.get(Institution, institution) is None:
                return None
            _row, key = await create_api_key(session, institution, name)
            return key

    key = _run_with_database(settings, work)
    if key is None:
        _fail(f"institution {institution} does not exist")
    print(key)


@partitions_app.command(
    "list",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph partitions list"], DATABASE, CHECKED),
)
def partitions_list() -> None:
    """List the attached partitions of usage_events with their estimated row counts."""
    from usagegraph.db.partitions import is_partitioned, list_partitions

    settings = _settings()

    async def work(engine: AsyncEngine) -> list[tuple[str, int]] | None:
        async with engine.connect() as conn:
            if not await is_partitioned(conn):
                return None
            return [(p.name, p.estimated_rows) for p in await list_partitions(conn)]

    partitions = _run_with_database(settings, work)
    if partitions is None:
        out.print("usage events are not partitioned here (SQLite keeps one table)")
        return
    for name, rows in partitions:
        print(f"{name}\t~{rows} rows")


@partitions_app.command(
    "maintain",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph partitions maintain"], (*DATABASE, EVENT_AGE), CHECKED),
)
def partitions_maintain() -> None:
    """Create this month's and the next months' partitions now, and move events of the
    months inside the event-time window (USAGEGRAPH_EVENT_MAX_AGE_DAYS) caught by the
    DEFAULT partition into partitions of their own (the server does this hourly)."""
    from usagegraph.db.partitions import maintain_partitions

    settings = _settings()

    async def work(engine: AsyncEngine) -> list[str]:
        return await maintain_partitions(engine, history=settings.event_window.max_age)

    created = _run_with_database(settings, work)
    out.print(f"created: {', '.join(created) or 'nothing (all in place)'}", highlight=False)


@partitions_app.command(
    "detach",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph partitions detach 2025-01"], DATABASE, CHECKED),
)
def partitions_detach(
    month: Annotated[str, typer.Argument(help="The month to detach, as YYYY-MM.")],
) -> None:
    """Detach a month's partition: it stays as a table of its own, to archive or drop.

    Reports keep that month's usage (the rollups hold its sums); listing its individual
    events stops.
    """
    from usagegraph.db.partitions import detach_month

    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        _fail(f"month must look like 2025-01, got {month!r}", code=2)

    async def work(engine: AsyncEngine) -> str | None:
        return await detach_month(engine, first)

    name = _run_with_database(_settings(), work)
    if name is None:
        _fail(f"usage_events has no partition for {month}")
    out.print(f"detached {name}: archive it (pg_dump -t {name}) and drop it when done")


@rollups_app.command(
    "rebuild",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph rollups rebuild"], DATABASE, CHECKED),
)
def rollups_rebuild() -> None:
    """Recompute every usage rollup from the usage events, in one transaction.

    Writes keep the rollups up to date; this is for after editing usage_events by hand, or
    to check them: a rebuild of correct rollups changes nothing.
    """
    from usagegraph.datasources.usage_rollups import rebuild_rollups

    settings = _settings()

    async def work(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await rebuild_rollups(conn)

    _run_with_database(settings, work)
    out.print("usage rollups rebuilt from the usage events", highlight=False)


@app.command(
    cls=PlainHelpCommand,
    epilog=epilog(
        ["usagegraph demo --if-empty", "usagegraph demo --users 50 --events 10000 --seed 7"],
        DATABASE,
        CHECKED,
    ),
)
def demo(
    users: Annotated[int, typer.Option(min=1, metavar="N", help="Users to create.")] = 200,
    institutions: Annotated[
        int, typer.Option(min=1, metavar="N", help="Institutions to create.")
    ] = 5,
    events: Annotated[
        int, typer.Option(min=0, metavar="N", help="Usage events to create.")
    ] = 100_000,
    days: Annotated[int, typer.Option(min=1, metavar="N", help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when the database already has users.")
    ] = False,
) -> None:
    """Generate a realistic demo data set and add it to the database."""
    from usagegraph.demo_data import DemoSpec, DemoSummary, generate_demo

    settings = _settings()
    spec = DemoSpec(users=users, institutions=institutions, events=events, days=days, seed=seed)

    if if_empty:
        populated, super_user_id = _run_with_database(settings, _populated)
        if populated:
            out.print("the database already has users: no demo data added (--if-empty)")
            if super_user_id is not None:
                out.print(f"try: usagegraph token --user {super_user_id}   (a super user)")
            return

    async def work(engine: AsyncEngine) -> DemoSummary:
        with _progress() as progress:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=total)
                progress.update(tasks[phase], completed=done, total=total)

            return await generate_demo(engine, spec, report)

    summary = _run_with_database(settings, work)
    out.print(
        f"demo data added: {summary.institutions} institutions, {summary.users} users, "
        f"{summary.usage_events} usage events, {summary.ledger_entries} ledger entries, "
        f"{summary.snapshots} snapshots",
        highlight=False,
    )
    out.print(
        f"try: usagegraph token --user {summary.super_user_id}   (a super user)",
        highlight=False,
    )


@app.command(
    "export-schema",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph export-schema --output schema.graphql"], ()),
)
def export_schema(
    output: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the SDL here instead of to standard output."),
    ] = None,
) -> None:
    """Print the GraphQL schema (SDL); the repo keeps it in schema.graphql."""
    from usagegraph.schema.root import schema
    from usagegraph.schema.sdl import schema_sdl

    sdl = schema_sdl(schema)
    if output is None:
        print(sdl, end="")
    else:
        output.write_text(sdl)


async def _populated(engine: AsyncEngine) -> tuple[bool, int | None]:
    """Whether the database has users, and the id of a super user if there is one."""
    async with session_factory(engine)() as session:
        populated = bool(await session.scalar(select(exists().where(User.id.is_not(None)))))
        super_user_id = await session.scalar(select(func.min(User.id)).where(User.role == "super"))
    return populated, super_user_id


@app.command(
    "export-openapi",
    cls=PlainHelpCommand,
    epilog=epilog(["usagegraph export-openapi --output openapi.json"], ()),
)
def export_openapi(
    output: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the document here instead of to standard output."),
    ] = None,
) -> None:
    """Print the OpenAPI document of the REST APIs; the repo keeps it in openapi.json."""
    import json

    from usagegraph.rest.openapi import openapi_document

    text = json.dumps(openapi_document(), indent=2) + "\n"
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def main() -> None:
    app()
