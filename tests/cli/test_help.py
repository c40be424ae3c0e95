"""Every `usagegraph … --help` explains itself: an example to copy, the environment
variables the command reads, and value names rather than Python types (`<str>`, `<bool>`).

The commands are found by walking the real command tree, so a new command without an
example or without an entry below fails here; each help is read from a real process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer import _click

from tests.cli.running import cli_env, run_cli
from usagegraph import settings
from usagegraph.cli import app

ROOT = Path(__file__).parents[2]
DATABASE = {"USAGEGRAPH_DATABASE_URL", "USAGEGRAPH_DATA_DIR"}
EVENT_AGE = "USAGEGRAPH_EVENT_MAX_AGE_DAYS"
TOKEN = {
    "USAGEGRAPH_JWT_SECRET",
    "USAGEGRAPH_JWT_KEYS",
    "USAGEGRAPH_JWT_SIGNING_KID",
    "USAGEGRAPH_JWT_ISSUER",
    "USAGEGRAPH_JWT_AUDIENCE",
    "USAGEGRAPH_JWT_MAX_TTL_SECONDS",
}
# The client command reads where the server is and the credential, not the server's settings.
CLIENT = {"USAGEGRAPH_URL", "USAGEGRAPH_API_KEY"}
# What each command reads from the environment, and so must name in its help.
READS: dict[str, set[str]] = {
    "": DATABASE | {"USAGEGRAPH_JWT_SECRET"},
    "serve": set(settings.VARIABLES) | {"PROMETHEUS_MULTIPROC_DIR"},
    "migrate": DATABASE | {EVENT_AGE},
    "import": DATABASE | {EVENT_AGE, "USAGEGRAPH_EVENT_MAX_FUTURE_SECONDS"},
    "token": DATABASE | TOKEN,
    "demo": DATABASE,
    "export-schema": set(),
    "export-openapi": set(),
    "apikey": DATABASE,
    "apikey create": DATABASE,
    "partitions": DATABASE | {EVENT_AGE},
    "partitions list": DATABASE,
    "partitions maintain": DATABASE | {EVENT_AGE},
    "partitions detach": DATABASE,
    "rollups": DATABASE,
    "rollups rebuild": DATABASE,
    "send": CLIENT,
    "worker": DATABASE
    | {
        "USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE",
        "USAGEGRAPH_WEBHOOKS_RETRY_BASE_MS",
        "USAGEGRAPH_WEBHOOKS_MAX_ATTEMPTS",
        "USAGEGRAPH_WEBHOOKS_POLL_MS",
        "USAGEGRAPH_WEBHOOKS_TIMEOUT_SECONDS",
        "USAGEGRAPH_WEBHOOKS_LEASE_SECONDS",
    },
}
TYPE_NOISE = re.compile(r"<[a-z][a-z ]*>")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VARIABLE = re.compile(r"\b(?:USAGEGRAPH|PROMETHEUS)_[A-Z0-9_]*[A-Z0-9]\b")


def command_paths(command: _click.Command, path: str = "") -> Iterator[str]:
    """Every command and group of the tree, as the words after `usagegraph`."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, f"{path} {name}".strip())


COMMANDS = sorted(command_paths(typer.main.get_command(app)))


def test_every_command_is_listed_with_what_it_reads() -> None:
    assert set(COMMANDS) == set(READS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda path: path or "usagegraph")
def test_help_shows_an_example_the_environment_and_no_type_noise(
    tmp_path: Path, command: str
) -> None:
    result = run_cli(cli_env(tmp_path, None), *command.split(), "--help")
    assert result.returncode == 0, result.stderr
    text = ANSI.sub("", result.stdout)
    lines = [line.strip() for line in text.splitlines()]

    examples = lines[lines.index("Example:") + 1 : lines.index("Environment:")]
    invocation = f"usagegraph {command}".strip()
    # An invocation of this very command, whole on one line (an 80-column terminal).
    assert any(line.startswith(invocation) for line in examples), text

    environment = text[text.index("Environment:") :]
    named = set(VARIABLE.findall(environment))
    assert named >= READS[command], READS[command] - named
    if not READS[command]:
        assert "none" in environment
    # Only variables that exist: a renamed setting cannot linger in the help.
    assert named <= set(settings.VARIABLES) | {"PROMETHEUS_MULTIPROC_DIR"} | CLIENT

    assert not TYPE_NOISE.findall(text), text
    assert not (tmp_path / "data").exists()  # help touches no database


def test_the_list_of_variables_is_the_one_the_code_reads_and_the_readme_documents() -> None:
    source = (ROOT / "usagegraph" / "settings.py").read_text()
    # Whole names written in the code (prefixes like "USAGEGRAPH_GRAPHQL_" end in `_`).
    written = set(re.findall(r'"(USAGEGRAPH_[A-Z0-9_]*[A-Z0-9])\b', source))
    assert written <= set(settings.VARIABLES), written - set(settings.VARIABLES)
    readme = (ROOT / "README.md").read_text()
    undocumented = [name for name in settings.VARIABLES if f"`{name}`" not in readme]
    assert not undocumented
