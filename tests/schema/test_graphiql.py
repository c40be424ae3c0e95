"""The GraphiQL page and its vendored assets, in process (the browser test loads them for real).

The page must work without internet: it references only `/graphql/assets/<digest>/<name>`
addresses that this app serves from the package, carries a Content-Security-Policy without
inline script, and none of it is served when GraphiQL is turned off.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

import usagegraph
from tests.conftest import client_of
from usagegraph.schema.graphiql import (
    ASSET_ROUTE,
    ASSETS,
    SCRIPTS,
    STYLESHEETS,
    asset_directory,
    assets,
)
from usagegraph.settings import GraphQLLimits, Settings

BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
# Ours, not vendored: everything else in ASSETS must be listed (with its checksum) in VERSIONS.
OWN_FILES = {"graphiql-init.js", "graphiql-page.css"}
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class _References(HTMLParser):
    """Every src/href on the page, and the text inside its <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.stylesheets: list[str] = []
        self.scripts: list[str] = []
        self.other: list[str] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self._in_script = True
            self.scripts.append(values.get("src") or "")
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values["href"] or "")
        else:
            self.other.extend(
                value or "" for name, value in attrs if name in {"src", "href", "action"}
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data


def _references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


async def _page(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.get("/graphql", headers=BROWSER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response


_client = client_of


async def test_the_page_references_only_its_own_local_assets(client: httpx.AsyncClient) -> None:
    html = (await _page(client)).text
    # No absolute or protocol-relative URL anywhere: nothing leaves the machine.
    assert re.search(r"https?://|[\"'(=]\s*//", html, re.IGNORECASE) is None, html
    page = _references(html)
    local = re.compile(rf"^{re.escape(ASSET_ROUTE)}/[0-9a-f]{{16}}/([A-Za-z0-9.-]+)$")
    names = {}
    for reference in page.stylesheets + page.scripts:
        match = local.match(reference)
        assert match, reference
        names[reference] = match[1]
    assert [names[href] for href in page.stylesheets] == list(STYLESHEETS)
    # React first, then ReactDOM, GraphiQL, and our bootstrap last.
    assert [names[src] for src in page.scripts] == list(SCRIPTS)
    assert page.other == ["data:,"]  # the icon: none, so the browser asks for no favicon
    assert page.inline_script.strip() == ""


async def test_the_page_forbids_inline_script_and_foreign_origins(
    client: httpx.AsyncClient,
) -> None:
    headers = (await _page(client)).headers
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    for sources in policy.values():
        assert "http" not in sources
        assert "*" not in sources
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


async def test_every_asset_the_page_references_is_served_and_cacheable(
    client: httpx.AsyncClient,
) -> None:
    page = _references((await _page(client)).text)
    references = page.stylesheets + page.scripts
    assert len(references) == len(ASSETS)
    for reference in references:
        name = reference.rsplit("/", 1)[1]
        response = await client.get(reference, headers={"accept-encoding": "identity"})
        assert response.status_code == 200, reference
        assert response.headers["content-type"] == CONTENT_TYPES[name[name.rindex(".") :]]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-encoding" not in response.headers
        body = asset_directory().joinpath(name).read_bytes()
        assert response.content == body
        # The address names the content: the digest is the start of the file's sha256.
        assert reference.split("/")[-2] == hashlib.sha256(body).hexdigest()[:16]


async def test_assets_are_gzipped_for_clients_that_accept_it(client: httpx.AsyncClient) -> None:
    bundle = assets()["graphiql.min.js"]
    response = await client.get(bundle.path, headers={"accept-encoding": "gzip, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == bundle.body  # httpx decoded it
    assert int(response.headers["content-length"]) < len(bundle.body) / 2

    refused = await client.get(bundle.path, headers={"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    assert refused.content == bundle.body

    # The same bytes every time (no timestamp in the gzip header).
    first, again = await _raw(client, bundle.path), await _raw(client, bundle.path)
    assert gzip.decompress(first) == bundle.body
    assert first == again

    small = assets()["graphiql-page.css"]
    response = await client.get(small.path, headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.content == small.body


async def _raw(client: httpx.AsyncClient, path: str) -> bytes:
    """The body as sent, not decoded."""
    async with client.stream("GET", path, headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_an_asset_is_not_sent_again_to_a_browser_that_has_it(
    client: httpx.AsyncClient,
) -> None:
    bundle = assets()["graphiql.min.js"]
    first = await client.get(bundle.path)
    again = await client.get(bundle.path, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_only_the_listed_assets_at_their_current_digest_are_served(
    client: httpx.AsyncClient,
) -> None:
    digest = assets()["graphiql.min.js"].digest
    not_served = [
        # Files that are in the directory but are not page assets.
        f"{ASSET_ROUTE}/{digest}/VERSIONS",
        f"{ASSET_ROUTE}/{digest}/README.md",
        f"{ASSET_ROUTE}/{digest}/LICENSE.react",
        # Unknown names, a real name under another digest (an old or made-up address).
        f"{ASSET_ROUTE}/{digest}/graphiql.js",
        f"{ASSET_ROUTE}/{digest}/graphiql.min.js.map",
        f"{ASSET_ROUTE}/0000000000000000/graphiql.min.js",
        f"{ASSET_ROUTE}/{assets()['graphiql-init.js'].digest}/graphiql.min.js",
        f"{ASSET_ROUTE}/graphiql.min.js",
        f"{ASSET_ROUTE}/",
        f"{ASSET_ROUTE}",
    ]
    for path in not_served:
        response = await client.get(path)
        assert response.status_code == 404, path


async def test_path_traversal_finds_nothing(client: httpx.AsyncClient) -> None:
    digest = assets()["graphiql.min.js"].digest
    attempts = [
        f"{ASSET_ROUTE}/{digest}/..%2f..%2f..%2fsettings.py",
        f"{ASSET_ROUTE}/{digest}/..%2F..%2Fschema%2Fgraphiql.py",
        f"{ASSET_ROUTE}/{digest}/..%2fgraphiql-init.js",
        f"{ASSET_ROUTE}/{digest}/%2e%2e%2fVERSIONS",
        f"{ASSET_ROUTE}/{digest}/..%5c..%5csettings.py",
        f"{ASSET_ROUTE}/..%2f..%2f..%2fapp.py/graphiql.min.js",
        f"{ASSET_ROUTE}/{digest}/%2fetc%2fpasswd",
        f"{ASSET_ROUTE}/{digest}/....%2f%2fsettings.py",
    ]
    for path in attempts:
        response = await client.get(httpx.URL(f"http://test{path}"))
        assert response.status_code == 404, path
        assert b"import" not in response.content


async def test_with_graphiql_off_neither_page_nor_assets_are_served(settings: Settings) -> None:
    served = [asset.path for asset in assets().values()]
    off = dataclasses.replace(settings, graphql=GraphQLLimits(graphiql=False))
    async with _client(off) as client:
        page = await client.get("/graphql", headers=BROWSER)
        assert page.status_code == 404
        assert "GraphiQL" not in page.text
        for path in served:
            assert (await client.get(path)).status_code == 404, path


async def test_behind_a_path_prefix_the_page_points_below_it(settings: Settings) -> None:
    async with _client(settings, root_path="/billing") as client:
        page = _references((await _page(client)).text)
        assert page.scripts
        for reference in page.stylesheets + page.scripts:
            assert reference.startswith(f"/billing{ASSET_ROUTE}/"), reference
            assert (await client.get(reference)).status_code == 200, reference


def test_vendored_files_are_the_ones_versions_lists() -> None:
    directory = asset_directory()
    listed = {}
    for line in directory.joinpath("VERSIONS").read_text().splitlines():
        if line and not line.startswith("#"):
            package, version, name, sha256 = line.split("\t")
            listed[name] = (package, version, sha256)
    assert set(ASSETS) - OWN_FILES <= set(listed)
    for name, (package, _version, sha256) in listed.items():
        body = directory.joinpath(name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == sha256, name
        # Each package's licence is shipped next to its code.
        assert f"LICENSE.{package}" in listed
    # GraphiQL's UMD bundle reads React and ReactDOM as globals: the pair must match.
    versions = {package: version for package, version, _sha in listed.values()}
    assert versions["react"] == versions["react-dom"]


@pytest.mark.parametrize("name", sorted(OWN_FILES))
def test_our_own_assets_reach_nothing_outside(name: str) -> None:
    text = asset_directory().joinpath(name).read_text()
    assert re.search(r"https?://|//[a-z0-9-]+\.[a-z]", text, re.IGNORECASE) is None


def test_the_package_data_ships_every_file_of_the_directory() -> None:
    """A wheel carries the assets (setuptools leaves out what package-data does not match)."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["usagegraph"]
    package = Path(usagegraph.__file__).parent
    files = list((package / "static" / "graphiql").iterdir())
    assert {file.name for file in files} >= set(ASSETS)
    for file in files:
        relative = file.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative
