"""The real app plus one route that holds the event loop, to test the loop watchdog.

`/stall?seconds=N` computes for N seconds without awaiting, as a pathological request would.
Used in-process by the tests, and by uvicorn (with the options `serve` uses) for a real server.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from usagegraph.app import create_app


async def stall(request: Request) -> JSONResponse:
    seconds = float(request.query_params.get("seconds", "60"))
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:  # CPU, never awaiting
        spins += 1
    return JSONResponse({"spins": spins})


def with_stall_route(app: Starlette) -> Starlette:
    app.router.routes.append(Route("/stall", stall, methods=["GET"]))
    return app


def create_stalling_app() -> Starlette:
    """The factory uvicorn imports: settings from the environment, like `serve`."""
    return with_stall_route(create_app())


def main() -> None:
    """`python -m tests.stalling_app serve --port P [--workers N]`: uvicorn as `serve` runs it."""
    import argparse

    import uvicorn

    from usagegraph.cli import uvicorn_options
    from usagegraph.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    arguments = parser.parse_args()
    options = uvicorn_options(Settings.from_env(), "127.0.0.1", arguments.port, arguments.workers)
    uvicorn.run("tests.stalling_app:create_stalling_app", **options)


if __name__ == "__main__":
    main()
