"""Peak memory and time of the ELS machine's patch table: the old whole-table build against the chunked
table and the streamed posterior (issue 15; difflab.analysis.local_score).

    OMP_NUM_THREADS=1 python benchmarks/els_memory.py --n 50 --sizes 3 9 15 --batch 4

Data: the first N `Shapes` images (3 x 32 x 32, seed 0), boundary-broken ELS with zero padding (as the
creativity study uses it). Each measurement runs in its own process; peak memory is that process's
high-water resident set (VmHWM) minus its resident set just before the step (VmRSS), so it counts what
the step allocates. Modes:
* old: the table as built before the change (every (image, location) patch unfolded at once, N H W C P^2
  floats, then torch.unique per location group);
* table: the distinct-patch table built chunk by chunk (difflab's EquivariantLocalScoreMachine.patch_table);
* stream: one denoiser call on a batch of `--batch` noisy images with no table (max_table_elements=0),
  memory O(max_elements) whatever P and N are;
* call: one denoiser call with the (already built) chunked table, for the time comparison;
* default: what the library does by itself (max_table_elements at its default, 2^25 floats): the table
  build, given up past the cap, then one denoiser call (table or stream).
The old, table and call modes lift the table cap (2^40) so the table is always built.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def measure(mode: str, n: int, P: int, batch: int) -> dict:
    import torch

    from difflab.analysis.local_score import (
        DEFAULT_MAX_TABLE_ELEMENTS,
        EquivariantLocalScoreMachine,
        centre_columns,
        location_groups,
        unfold_patches,
    )
    from difflab.data.shapes import Shapes
    from difflab.process import RectifiedFlow

    data = Shapes(n, seed=0)
    train = torch.stack([data[i]["x"] for i in range(n)]).to(torch.float64)
    process = RectifiedFlow()
    g = torch.Generator().manual_seed(0)
    x = 0.5 * train[:batch] + 0.5 * torch.randn(batch, *train.shape[1:], generator=g, dtype=torch.float64)
    tt = torch.full((batch,), 0.5, dtype=torch.float64)
    els = EquivariantLocalScoreMachine(train, process, P, boundary_broken=True,
                                       max_table_elements={"stream": 0, "default": DEFAULT_MAX_TABLE_ELEMENTS}.get(mode, 2**40))
    if mode == "call":
        els.patch_table(P)
    rss = _kib("VmRSS")
    t0 = time.perf_counter()
    if mode == "old":  # the pre-change patch_table, verbatim in substance
        N, C, H, W = train.shape
        patches = unfold_patches(train, P, "zeros")  # (N, HW, F): every patch at once
        groups = location_groups(H, W, P, True)
        rows = 0
        for gid in torch.unique(groups).tolist():
            locs = (groups == gid).nonzero()[:, 0]
            keys, counts = torch.unique(patches[:, locs].reshape(-1, patches.shape[2]), dim=0, return_counts=True)
            rows += len(keys)
            _ = (0.5 * (keys**2).sum(1), counts.log(), keys[:, centre_columns(C, P)])
        out = {"distinct_patches": rows}
    elif mode == "table":
        out = {"distinct_patches": sum(len(k) for _, k, *_ in els.patch_table(P))}
    else:
        els.posterior_mean(x, tt)
        out = {"tabulated": els.patch_table(P) is not None} if mode == "default" else {}
    return {"mode": mode, "n": n, "P": P, "batch": batch, "seconds": round(time.perf_counter() - t0, 2),
            "peak_mib": round((_kib("VmHWM") - rss) / 1024, 1), **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 9, 15])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--modes", nargs="+", default=["old", "table", "call", "stream"])
    ap.add_argument("--one", nargs=2, metavar=("MODE", "P"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], a.n, int(a.one[1]), a.batch)))
        return
    rows = []
    for P in a.sizes:
        for mode in a.modes:
            cmd = [sys.executable, __file__, "--n", str(a.n), "--batch", str(a.batch), "--one", mode, str(P)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            print(json.dumps(rows[-1]), flush=True)
    print("| N | P | mode | seconds | peak MiB | distinct patches |\n| ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']} | {r['P']} | {r['mode']} | {r['seconds']} | {r['peak_mib']} | {r.get('distinct_patches', '')} |")


if __name__ == "__main__":
    main()
