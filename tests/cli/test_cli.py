"""The command line: version, demo outputs, one clear message for bad input."""

from typer.testing import CliRunner

from difflab import __version__
from difflab.cli.main import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_unknown_command_fails():
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code != 0
