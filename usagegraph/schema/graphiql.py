"""The GraphiQL page and its assets, served from the package itself: no CDN, works offline.

React, ReactDOM and GraphiQL are vendored in `usagegraph/static/graphiql/` (pinned versions
and checksums in its VERSIONS file, refreshed by `scripts/refresh-graphiql`), next to our
own `graphiql-init.js` and `graphiql-page.css`. Each asset is served at
`/graphql/assets/<digest>/<name>`, the digest being the start of the file's sha256, so it can
be cached for a year: a changed file gets a new address. Only the files in `ASSETS` are
served, and only when GraphiQL is on (the routes are not mounted otherwise).

The page itself references nothing but those addresses and carries a Content-Security-Policy
that allows nothing else: scripts and requests from this origin only, no inline script (our
bootstrap is `graphiql-init.js`), styles from this origin plus the inline ones GraphiQL's
dialogs add, fonts and icons also as the `data:` URLs GraphiQL's stylesheet embeds.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

ASSET_ROUTE = "/graphql/assets"
# The page's stylesheets and scripts, in the order it loads them.
STYLESHEETS = ("graphiql.min.css", "graphiql-page.css")
SCRIPTS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql-init.js",
)
ASSETS = STYLESHEETS + SCRIPTS
_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_DIGEST_LENGTH = 16
# A year: an asset's address changes with its content, so a cached copy is never stale.
_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Smaller bodies are not worth compressing.
_GZIP_MIN_BYTES = 1024

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # GraphiQL's dialogs add <style> elements whose content is computed (the scroll lock's
        # scrollbar gap), so no hash can allow them. Scripts stay 'self' only.
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # The page may hold a token in its headers editor: never framed, never cached, no referrer.
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Asset:
    """One servable file, read once per process."""

    name: str
    body: bytes
    content_type: str
    digest: str

    @property
    def path(self) -> str:
        """Its address below the app's root."""
        return f"{ASSET_ROUTE}/{self.digest}/{self.name}"

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


# Compressed bodies by digest, made on first request (GraphiQL's bundle shrinks 4 to 1).
_gzipped: dict[str, bytes] = {}


async def gzipped(asset: Asset) -> bytes | None:
    """The asset's body compressed (once, off the event loop); None when too small."""
    if len(asset.body) < _GZIP_MIN_BYTES:
        return None
    if asset.digest not in _gzipped:
        _gzipped[asset.digest] = await asyncio.to_thread(gzip.compress, asset.body, 9, mtime=0)
    return _gzipped[asset.digest]


def asset_directory() -> Traversable:
    """Where the assets are installed (inside the package, also from a wheel)."""
    return resources.files("usagegraph").joinpath("static", "graphiql")


@cache
def assets() -> dict[str, Asset]:
    """Every servable asset by name; read from the package on first use."""
    directory = asset_directory()
    loaded = {}
    for name in ASSETS:
        body = directory.joinpath(name).read_bytes()
        suffix = name[name.rindex(".") :]
        loaded[name] = Asset(
            name=name,
            body=body,
            content_type=_CONTENT_TYPES[suffix],
            digest=hashlib.sha256(body).hexdigest()[:_DIGEST_LENGTH],
        )
    return loaded


def page_html(root_path: str = "") -> str:
    """The GraphiQL page, every asset referenced by its path below `root_path`."""
    served = assets()

    def url(name: str) -> str:
        return escape(root_path + served[name].path, quote=True)

    stylesheets = "\n".join(
        f'    <link rel="stylesheet" href="{url(name)}" />' for name in STYLESHEETS
    )
    scripts = "\n".join(f'    <script src="{url(name)}"></script>' for name in SCRIPTS)
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="robots" content="noindex" />
    <title>usagegraph GraphiQL</title>
    <link rel="icon" href="data:," />
{stylesheets}
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <noscript>GraphiQL needs JavaScript. The API answers POST /graphql without it.</noscript>
{scripts}
  </body>
</html>
"""


def graphiql_page(request: Request) -> Response:
    """The page for `GET /graphql` from a browser, with its Content-Security-Policy."""
    return HTMLResponse(page_html(request.scope.get("root_path", "")), headers=_PAGE_HEADERS)


async def graphiql_asset(request: Request) -> Response:
    """One vendored or own asset at its current digest; anything else is 404."""
    asset = assets().get(request.path_params["name"])
    if asset is None or request.path_params["digest"] != asset.digest:
        return PlainTextResponse("Not Found", status_code=404)
    headers = {
        "Cache-Control": _ASSET_CACHE_CONTROL,
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        compressed = await gzipped(asset)
        if compressed is not None:
            body = compressed
            headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.content_type, headers=headers)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` lists gzip without refusing it (`gzip;q=0`)."""
    for part in accept_encoding.split(","):
        coding, _, parameters = part.partition(";")
        if coding.strip().lower() == "gzip":
            quality = parameters.replace(" ", "").lower().removeprefix("q=")
            return not (quality and quality.strip("0.") == "")
    return False


def graphiql_routes() -> list[Route]:
    """The asset route, for an app that serves GraphiQL."""
    return [Route(ASSET_ROUTE + "/{digest}/{name}", graphiql_asset, methods=["GET"])]
