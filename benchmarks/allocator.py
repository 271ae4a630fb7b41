"""What freed memory costs: one streamed LS-machine call, or a short bespoke-solver fit, with glibc's default
malloc settings and with difflab's (difflab.utils.allocator.keep_freed_memory, which every `difflab` command
applies).

    OMP_NUM_THREADS=1 python benchmarks/allocator.py --n 2000 --patch 15 --batch 4 --repeats 2
    OMP_NUM_THREADS=1 python benchmarks/allocator.py --case bespoke --pilot 2048 --iterations 10 --repeats 1

ls case: the first N `Shapes` images (3 x 32 x 32, seed 0, every colour-shape pair), the LS machine with zero
padding and no table (its (HW, N, 3 P^2) table is past any cap at these sizes, so it streams: a key block
of training patches and a logit block are allocated and freed per block of images). Each measurement runs
in its own process (malloc settings are per process), alternating the two settings; the process reports
the call's wall, user and system seconds, its minor page faults and the process's peak resident set
(getrusage).
bespoke case: benchmarks/peers.py's bespoke fit at NFE 10 on the broad 256-D mixture (the DDPM table), a
`--pilot` noise batch and `--iterations` Adam steps, measured the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HEAD = """
import json, resource, sys, time, torch
from difflab.utils.allocator import keep_freed_memory
mode = sys.argv[1]
applied = keep_freed_memory() if mode == "difflab" else False
torch.set_num_threads(1)
"""
REPORT = """
print(json.dumps({"mode": mode, "applied": applied, "wall_s": t1 - t0, "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime, "minor_faults": r1.ru_minflt - r0.ru_minflt,
                  "peak_rss_mib": r1.ru_maxrss / 1024}))
"""
LS = """
from difflab.analysis.local_score import LocalScoreMachine
from difflab.data.shapes import Shapes
from difflab.process import RectifiedFlow
n, P, B = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
train = Shapes(n, seed=0, size=32, combos="all", jitter=1).render(torch.arange(n)).double()
machine = LocalScoreMachine(train, RectifiedFlow(), P, max_table_elements=0)
x = torch.randn(B, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
machine.x0_at(x, 0.5, 0.5, 0.5)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
"""
BESPOKE = """
sys.path.insert(0, sys.argv[4])
import peers
D = peers.broad_mixture().denoiser(peers.PROCESS, "eps")
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
peers.fitted_grid("bespoke", {}, 10, D, 256, int(sys.argv[2]), max_evals=int(sys.argv[3]))
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
"""


def measure(mode: str, args) -> dict:
    if args.case == "ls":
        body, extra = LS, [str(args.n), str(args.patch), str(args.batch)]
    else:
        body, extra = BESPOKE, [str(args.pilot), str(args.iterations), str(Path(__file__).resolve().parent)]
    out = subprocess.run([sys.executable, "-c", HEAD + body + REPORT, mode, *extra],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("ls", "bespoke"), default="ls")
    parser.add_argument("--n", type=int, default=2000, help="training images")
    parser.add_argument("--patch", type=int, default=15, help="patch size P (odd)")
    parser.add_argument("--batch", type=int, default=4, help="noisy images per call")
    parser.add_argument("--pilot", type=int, default=2048, help="bespoke: pilot noises")
    parser.add_argument("--iterations", type=int, default=10, help="bespoke: Adam iterations")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    rows = [measure(mode, args) for _ in range(args.repeats) for mode in ("default", "difflab")]
    print("| malloc | wall s | user s | system s | minor faults | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | {r['minor_faults']:,} | {r['peak_rss_mib']:.0f} |")
    best = {m: min(r["wall_s"] for r in rows if r["mode"] == m) for m in ("default", "difflab")}
    print(f"wall, best of {args.repeats}: default {best['default']:.1f} s, difflab {best['difflab']:.1f} s, "
          f"ratio {best['default'] / best['difflab']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
