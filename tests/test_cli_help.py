"""The command line's help: every command's ``--help`` prints its usage and exits 0, and the whole parser (what
``talmts --help`` builds) loads neither torch nor the video libraries, so help is quick."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from talmts.cli import COMMANDS, main

HEAVY = ("torch", "av", "cv2")


def test_the_whole_parser_loads_neither_torch_nor_the_video_libraries():
    code = (
        "import sys\n"
        "from talmts.cli import build_parser\n"
        "parser = build_parser()\n"
        "assert parser.format_help()\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [], f"building the parser imported {done.stdout.strip()}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: talmts {command} ") and "-h, --help" in out


def test_talmts_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    listed = {name for name in COMMANDS if re.search(rf"^\s+{re.escape(name)}\s", out, re.M)}
    assert listed == set(COMMANDS)  # each on a line of its own ("eval" is also inside "evaluate")
