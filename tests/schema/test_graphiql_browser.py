"""GraphiQL in a real browser, offline: Debian's chromium driven by Playwright.

A real `usagegraph serve` on the embedded SQLite file, its users imported with
`usagegraph import`, and a token signed with the server's secret. The browser may reach
only that server (anything else is aborted and recorded): the page loads, the token goes
into GraphiQL's headers editor, the query runs, and its result shows in the result pane.

Needs the `chromium` Debian package (never a downloaded browser) and the `playwright`
package (test extra). Without them the test is skipped, unless `CI` is set: CI installs
chromium (.ci/run), so there a missing browser is a failure. A screenshot is saved in
$USAGEGRAPH_TEST_ARTIFACTS (else the test's tmp_path) and its path printed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cli.running import cli_env, run_cli, serving
from tests.conftest import TEST_JWT_SECRET
from usagegraph.auth.tokens import mint_token

DATA = Path(__file__).parent.parent / "data"
USER_ID = 7  # Ada, an admin of Acme, in every_kind.ndjson
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
QUERY = "{ viewer { kind userId role } }"
TIMEOUT_MS = 30_000


def _chromium() -> str:
    """Debian's chromium and Playwright, or a skip (a failure under CI) saying which is absent."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    executable = (
        os.environ.get("USAGEGRAPH_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if executable is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    if missing:
        reason = "the GraphiQL browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"{reason}; CI must run it")
        pytest.skip(reason)
    assert executable is not None
    return executable


def _artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("USAGEGRAPH_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_graphiql_runs_a_query_with_a_token_offline(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import Route, sync_playwright

    env = cli_env(tmp_path, database_url=None)
    imported = run_cli(env, "import", str(DATA / "every_kind.ndjson"))
    assert imported.returncode == 0, imported.stderr
    # Signed with the server's secret (cli_env sets it), as `usagegraph token` would.
    token = mint_token(USER_ID, TEST_JWT_SECRET, ttl_seconds=600)
    screenshot = _artifacts(tmp_path) / "graphiql.png"

    requests: list[dict[str, Any]] = []
    foreign: list[str] = []
    problems: list[str] = []

    def only_this_machine(route: Route) -> None:
        """The machine is offline as far as the page knows: only the server answers."""
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort("internetdisconnected")

    with serving(env) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", only_this_machine)
            page.on(
                "request",
                lambda request: requests.append(
                    {
                        "url": request.url,
                        "method": request.method,
                        "headers": request.headers,
                        "body": request.post_data,
                    }
                ),
            )
            page.on("websocket", lambda socket: foreign.append(socket.url))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
            try:
                page.goto(f"{base}/graphql")
                query_editor = page.locator(".graphiql-query-editor .CodeMirror")
                query_editor.wait_for()

                # The credential, typed into GraphiQL's headers editor as a user would paste it.
                page.get_by_role("button", name="Headers").click()
                page.locator(
                    ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
                ).click()
                page.keyboard.type(json.dumps({"Authorization": f"Bearer {token}"}))

                query_editor.click()
                page.keyboard.press("Control+A")
                page.keyboard.type(QUERY)
                page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()

                result = page.locator(".result-window")
                result.get_by_text('"USER"').wait_for()
                shown = json.loads(
                    result.locator(".CodeMirror").evaluate("e => e.CodeMirror.getValue()")
                )
                assert shown == {
                    "data": {"viewer": {"kind": "USER", "userId": USER_ID, "role": "admin"}}
                }
                assert '"kind": "USER"' in result.inner_text()
            finally:
                page.screenshot(path=str(screenshot))
                print(f"GraphiQL screenshot: {screenshot}")

            # A dialog (it adds inline <style>) opens without the page's CSP refusing anything.
            page.get_by_role("button", name="Open settings dialog").click()
            page.get_by_role("dialog").get_by_text("Persist headers").wait_for()
            page.keyboard.press("Escape")
        finally:
            browser.close()

    assert foreign == []
    assert problems == []
    hosts = {urlsplit(request["url"]).hostname for request in requests}
    assert hosts == {"127.0.0.1"}
    # The page, its six assets, the schema's introspection and the query: nothing else.
    gets = [urlsplit(r["url"]).path for r in requests if r["method"] == "GET"]
    assert gets[0] == "/graphql"
    assert all(path.startswith("/graphql/assets/") for path in gets[1:])
    assert len(gets) == 7
    posts = [r for r in requests if r["method"] == "POST"]
    assert [urlsplit(r["url"]).path for r in posts] == ["/graphql"] * len(posts)
    # The last one is our query, sent with the header from the editor.
    assert json.loads(posts[-1]["body"])["query"] == QUERY
    assert posts[-1]["headers"].get("authorization") == f"Bearer {token}"
