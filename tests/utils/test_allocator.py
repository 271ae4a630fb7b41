"""keep_freed_memory: freed large blocks are reused instead of faulted in again (counted page faults, not time)."""

import platform
import subprocess
import sys

import pytest

from difflab.utils import allocator

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc")

# 20 steps that each allocate a 64 MiB and a 32 MiB temporary (24576 pages) and free them, as a streamed
# posterior's key chunk and logit block do; prints the minor page faults the 20 steps cost.
PROBE = """
import resource, sys, torch
from difflab.utils.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
x = torch.ones(2**20, dtype=torch.float64)
def step():
    keys = x.repeat(8)
    logits = keys[: 2**22] * 2.0
    return float(logits[0] + keys[-1])
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@glibc_only
def test_freed_blocks_are_reused():
    applied_default, faults_default = probe("default")
    applied, faults_tuned = probe("tuned")
    assert not applied_default and applied
    pages = 20 * (2**26 + 2**25) // 4096
    assert faults_default >= 0.9 * pages  # every step faults its temporaries' pages in again
    assert faults_tuned <= 0.25 * pages  # measured 0.07-0.12: most steps reuse the freed pages


@glibc_only
def test_system_malloc_on_request(monkeypatch):
    monkeypatch.setenv("DIFFLAB_MALLOC", "system")
    assert allocator.keep_freed_memory() is False


@glibc_only
def test_a_launchers_setting_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.keep_freed_memory() is False


def test_nothing_happens_off_glibc(monkeypatch):
    monkeypatch.setattr(allocator.platform, "system", lambda: "Darwin")
    assert allocator.keep_freed_memory() is False
