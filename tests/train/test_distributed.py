"""Two CPU processes (gloo) under torch.distributed.run: ranks stay identical, resume stays exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from difflab.train import read_log


@pytest.mark.slow  # two processes under torch.distributed.run: ~24 s on 2 shared cores
def test_two_process_ranks_end_identical_and_resume_exactly(tmp_path):
    script = Path(__file__).with_name("ddp_script.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"hash-{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1  # every weight of both runs, bit for bit on both ranks
    assert rank0["world_size"] == 2
    assert rank0["straight"] != rank0["initial"]  # training did move the weights
    assert rank0["resumed"] == rank0["straight"] and rank0["resumed_ema"] == rank0["straight_ema"]
    straight, resumed = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in straight] == [3, 6] and [r["images_seen"] for r in straight] == [24, 48]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    state = json.loads((tmp_path / "b" / "ckpt-6" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["rng"][0] != state["rng"][1]
