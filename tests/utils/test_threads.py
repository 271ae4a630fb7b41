"""set_threads: one thread by default, OMP_NUM_THREADS respected, bad counts refused in CLI words."""

from __future__ import annotations

import pytest
import torch

from difflab.utils.errors import DifflabError
from difflab.utils.threads import DEFAULT_THREADS, default_threads, set_threads


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_one_thread_unless_omp_num_threads_says(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert DEFAULT_THREADS == 1 and default_threads() == 1
    assert set_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert default_threads() == 1


def test_explicit_count_is_applied():
    assert set_threads(2) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_counts_are_refused(bad):
    with pytest.raises(DifflabError, match="--threads must be a whole number >= 1"):
        set_threads(bad)


@pytest.mark.parametrize("command", [["train", "toy2d", "--steps", "1", "--out", "X"], ["sample", "RUN", "--out", "X"],
                                     ["demo", "--out", "X"], ["eval", "RUN", "--json", "X"],
                                     ["edit", "RUN", "--image", "X", "--out", "X"]])
def test_cli_threads_option_refuses_zero_in_one_line(command, tmp_path):
    from typer.testing import CliRunner

    from difflab.cli.main import app

    args = [str(tmp_path) if a == "RUN" else str(tmp_path / "x") if a == "X" else a for a in command]
    r = CliRunner().invoke(app, [*args, "--threads", "0"])
    assert r.exit_code == 2
    assert "--threads must be a whole number >= 1" in r.output and "Traceback" not in r.output


def test_cli_threads_option_sets_torch_threads(tmp_path):
    from typer.testing import CliRunner

    from difflab.cli.main import app

    r = CliRunner().invoke(app, ["train", "toy2d", "--steps", "1", "--out", str(tmp_path / "run"),
                                 "--set", "model.options.hidden_dim=8", "--threads", "2"])
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == 2
