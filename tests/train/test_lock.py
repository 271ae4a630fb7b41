"""The run-folder lock: a second writer is refused by name, a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from difflab.objectives import DiffusionLoss
from difflab.train import TrainConfig, Trainer, list_checkpoints, read_log
from difflab.train.lock import LOCK_NAME, RunLock, RunLocked

from .helpers import tiny_denoiser, toy_data

RIVAL = textwrap.dedent("""
    import sys, torch
    from torch import nn
    from difflab.train import TensorBatchDataset, TrainConfig, Trainer
    from difflab.utils.errors import DifflabError
    trainer = Trainer(nn.Linear(2, 2), None, TensorBatchDataset(torch.zeros(8, 2)), TrainConfig(batch_size=4),
                      sys.argv[1])
    try:
        trainer.train(resume=True)
    except DifflabError as e:
        print(e, file=sys.stderr)
        sys.exit(3)
""")


def _config(**kw) -> TrainConfig:
    base = dict(batch_size=8, log_every=1, ckpt_every=2, keep_last=1, ema=64.0, lr=1e-2, seed=7)
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_two_resumes_at_once_the_second_is_refused_and_harms_nothing(tmp_path):
    """While one process resumes a run, a second `train(resume=True)` on the folder (another process)
    is refused naming the first (pid, host, start time), before it reads or writes anything: the
    first keeps its checkpoints and its log has each step once."""
    run = tmp_path / "run"
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=4), run).train()
    loss, rival = DiffusionLoss(), {}

    def loss_meeting_a_rival(model, x0, cond=None, generator=None):
        if not rival and len(list_checkpoints(run)) == 1 and list_checkpoints(run)[0].name == "ckpt-6":
            rival["proc"] = subprocess.run([sys.executable, "-c", RIVAL, str(run)], capture_output=True,
                                           text=True, timeout=300)
        return loss(model, x0, cond, generator=generator)

    result = Trainer(tiny_denoiser(), loss_meeting_a_rival, toy_data(), _config(max_steps=9), run).train(resume=True)
    proc = rival["proc"]
    assert proc.returncode == 3, proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"in use by another difflab process (pid {os.getpid()} on {socket.gethostname()}, started" in message
    assert "Traceback" not in proc.stderr
    assert result.step == 9 and [p.name for p in list_checkpoints(run)] == ["ckpt-9"]
    assert [r["step"] for r in read_log(run / "log.jsonl")] == list(range(1, 10))
    assert (run / LOCK_NAME).read_text() == ""  # released cleanly: no record left


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path):
    dead = int(open("/proc/sys/kernel/pid_max").read()) + 1 if os.path.exists("/proc/sys/kernel/pid_max") else 2**22 + 1
    record = {"pid": dead, "host": socket.gethostname(), "started": "2026-12-01 20:00:00 UTC", "command": "difflab"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and f"pid {dead}" in lock.note and "no longer running" in lock.note
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    with RunLock(tmp_path) as lock:  # a clean release leaves nothing to take over
        assert lock.note is None




@pytest.mark.slow
def test_a_locked_folder_refuses_before_touching_anything(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from difflab.train.lock import RunLock
        with RunLock({str(tmp_path)!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"pid {proc.pid} on {socket.gethostname()}, started "):
            RunLock(tmp_path).acquire()
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    with RunLock(tmp_path) as lock:
        assert lock.note is None


def test_the_lock_is_reentrant_in_its_process(tmp_path):
    with RunLock(tmp_path), RunLock(tmp_path):  # a job holding it runs a Trainer, which takes it again
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_without_file_locks_the_run_goes_on_with_a_note(tmp_path, monkeypatch):
    from difflab.train import lock as lock_mod

    monkeypatch.setattr(lock_mod, "fcntl", None)
    with RunLock(tmp_path) as lock:
        assert lock.note.startswith(f"cannot lock {tmp_path / LOCK_NAME}") and "no other process" in lock.note


def test_a_lock_on_a_file_unlinked_meanwhile_is_taken_again_on_the_file_in_place(tmp_path, monkeypatch):
    """A refused run deletes the .lock it holds; a process that opened that file just before locks nothing.

    The first lockf below succeeds on a file that is then unlinked (the refused run's clean-up), so the lock
    must be taken again on the new file at RUN/.lock, or a third process could hold that one as well."""
    import difflab.train.lock as lock_module

    real_lockf, calls = lock_module.fcntl.lockf, []

    def lockf_then_unlinked(f, flags):
        real_lockf(f, flags)
        calls.append(os.fstat(f.fileno()).st_ino)
        if len(calls) == 1:
            os.unlink(tmp_path / LOCK_NAME)

    monkeypatch.setattr(lock_module.fcntl, "lockf", lockf_then_unlinked)
    with RunLock(tmp_path) as lock:
        held = lock_module._HELD[lock.key][0]
        assert len(calls) == 2 and os.fstat(held.fileno()).st_ino == os.stat(tmp_path / LOCK_NAME).st_ino
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
