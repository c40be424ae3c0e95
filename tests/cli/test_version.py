"""`usagegraph --version` says which version is installed, without touching a database."""

from __future__ import annotations

from pathlib import Path

from tests.cli.running import cli_env, run_cli
from usagegraph import __version__


def test_version_is_printed(tmp_path: Path) -> None:
    result = run_cli(cli_env(tmp_path, None), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"usagegraph {__version__}"
    assert not (tmp_path / "data").exists()


def test_commands_still_run_after_the_option_callback(tmp_path: Path) -> None:
    result = run_cli(cli_env(tmp_path, None), "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--workers" in result.stdout
