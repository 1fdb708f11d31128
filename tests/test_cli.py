"""``shopify-app``: built-in commands, and the commands installed packages contribute.

Contributions are read from real distribution metadata: the installed ``goldpan`` one, and
small ``*.dist-info`` folders written into ``tmp_path`` and put on ``sys.path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shopify_app.cli import COMMANDS_GROUP, Command, contributed_commands, load_command, main


def _install_metadata(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution contributing ``entry_points`` to ``shopify-app``."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"{command} = {target}" for command, target in entry_points.items()]
    (info / "entry_points.txt").write_text(f"[{COMMANDS_GROUP}]\n" + "\n".join(lines) + "\n")


def test_the_sandbox_contributes_demo_and_sandbox() -> None:
    from goldpan_sandbox import cli as sandbox_cli

    commands = {name: load_command(ep) for name, ep in contributed_commands().items()}
    assert isinstance(commands["demo"], Command)
    assert commands["demo"].run is sandbox_cli.demo
    assert commands["sandbox"].run is sandbox_cli.main


def test_a_contributed_command_parses_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--help"]) == 0
    assert "usage: shopify-app sandbox" in capsys.readouterr().out
    assert main(["demo", "--port", "eighty"]) == 2
    err = capsys.readouterr().err
    assert "usage: shopify-app demo" in err
    assert "invalid int value: 'eighty'" in err


def test_the_command_list_shows_contributed_commands_with_their_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, entry_point in contributed_commands().items():
        assert f"{name} {load_command(entry_point).help}" in out


def test_an_unknown_command_says_where_commands_come_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["frobnicate", "--now"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    assert "serve" in err and "demo" in err
    assert COMMANDS_GROUP in err


def test_a_command_whose_package_cannot_load_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_metadata(tmp_path, "half_installed", {"reports": "goldpan_reports_missing:REPORTS"})
    monkeypatch.syspath_prepend(str(tmp_path))

    assert main(["reports", "--weekly"]) == 2
    err = capsys.readouterr().err
    assert "`shopify-app reports` could not be loaded from goldpan_reports_missing:REPORTS" in err
    assert "No module named 'goldpan_reports_missing'" in err

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "reports unavailable:" in " ".join(capsys.readouterr().out.split())


def test_an_entry_point_that_is_not_a_command_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_metadata(tmp_path, "confused", {"version": "shopify_app:__doc__"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["version"]) == 2
    assert "shopify_app:__doc__ is not a shopify_app.cli.Command" in capsys.readouterr().err


def test_a_package_cannot_replace_a_built_in_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_metadata(tmp_path, "usurper", {"serve": "goldpan_sandbox.cli:DEMO"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    assert "usage: shopify-app serve [-h] [--port PORT] [--host HOST]" in capsys.readouterr().out


def _sandbox_modules_after(*argv: str) -> list[str]:
    script = (
        "import json, sys\n"
        "from shopify_app.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "names = [m for m in sys.modules if m.split('.')[0] == 'goldpan_sandbox']\n"
        "print(json.dumps(sorted(names)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return names


def test_built_in_commands_do_not_import_the_packages_that_contribute_others() -> None:
    assert _sandbox_modules_after("keygen") == []
    assert _sandbox_modules_after("serve", "--help") == []
    # Listing the commands does import them (for their help), so the check above can fail.
    assert "goldpan_sandbox.cli" in _sandbox_modules_after("--help")


@pytest.mark.parametrize("argv", [["demo"], ["sandbox", "serve", "--port", "0"]])
def test_the_sandbox_without_its_extra_says_how_to_install_it(argv: list[str]) -> None:
    # sys.modules[name] = None makes importing it fail as if graphql-core were not installed.
    script = (
        "import sys\n"
        "sys.modules['graphql'] = None\n"
        "from shopify_app.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "the sandbox needs 'graphql', which is not installed" in done.stderr
    assert "pip install 'goldpan[sandbox]'" in done.stderr
