"""Sampler benchmark: every sampler x grid on the exact Gaussian-mixture denoiser (docs/benchmarks.md).

    python benchmarks/samplers.py --json outputs/samplers.json --markdown outputs/samplers.md \
        --plot outputs/samplers.png            # full: vp + flow, ring + 64-D, NFE 5..100
    python benchmarks/samplers.py --quick      # vp only, NFE 5/10/20, a subset

The same job is `difflab bench samplers` (difflab.jobs.bench_samplers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from difflab.jobs.bench_samplers import run_sampler_benchmark


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="vp only, NFE 5/10/20, a subset of samplers")
    parser.add_argument("--processes", nargs="+", default=None, help="processes (default: vp flow; quick: vp)")
    parser.add_argument("--nfes", nargs="+", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write rows (case, sampler, schedule, nfe, rmse, sw2_ratio)")
    parser.add_argument("--markdown", type=Path, help="write the tables as markdown")
    parser.add_argument("--plot", type=Path, help="write the log-log error-vs-NFE figure (PNG)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-step overhead timing")
    parser.add_argument("--pictures", type=Path, help="also write trajectory pictures (PNG, GIF) to this folder")
    parser.add_argument("--verbose", action="store_true")
    a = parser.parse_args(argv)
    print(run_sampler_benchmark(quick=a.quick, processes=a.processes, nfes=a.nfes, workers=a.workers, seed=a.seed,
                                json_path=a.json, markdown_path=a.markdown, plot_path=a.plot,
                                pictures_dir=a.pictures, overhead=not a.no_overhead, verbose=a.verbose))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
