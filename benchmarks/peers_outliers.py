"""Per-sample errors of benchmarks/peers.py configurations: how much of a cell's RMSE is a few samples?

    OMP_NUM_THREADS=1 python benchmarks/peers_outliers.py image64 10 difflab=ipndm/poly2 diffusers=DEIS-3/karras

CASE NFE, then LIBRARY=CONFIG items (difflab: sampler/grid as in peers.DIFFLAB_SAMPLERS / DIFFLAB_GRIDS;
diffusers: a label of peers.diffusers_configs). Same noises and references as peers.py. Prints the RMSE, the
number of samples whose RMS error (over coordinates) exceeds 0.1, the RMSE of the others and the largest
per-sample errors (docs/benchmarks.md, "A default for discrete tables").
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402

f64 = torch.float64


def endpoint(spec: str, nfe: int, z: torch.Tensor, D, refs):
    library, config = spec.split("=", 1)
    if library == "difflab":
        label, grid = config.split("/")
        sampler, options = peers.DIFFLAB_SAMPLERS[label]
        steps = peers.difflab_steps(sampler, nfe)
        return peers.difflab_endpoint(sampler, options, peers.DIFFLAB_GRIDS[grid], steps, z, D, refs)
    _, cls_name, options, space = next(c for c in peers.diffusers_configs(leading=True) if c[0] == config)
    return peers.diffusers_endpoint(cls_name, options, space, peers.diffusers_steps(cls_name, nfe), z.float(), D, refs)


def main(argv: list[str]) -> int:
    case, nfe, specs = argv[0], int(argv[1]), argv[2:]
    torch.set_num_threads(1)
    make, n = peers.CASES[case]
    mixture = make()
    D = mixture.denoiser(peers.PROCESS, "eps")
    refs = peers.References(D, 1e-8)
    z = torch.randn(n, mixture.dim, generator=torch.Generator().manual_seed(0), dtype=f64)
    for spec in specs:
        calls, out, ref = endpoint(spec, nfe, z, D, refs)
        e = (out.to(f64) - ref).square().mean(1).sqrt()
        big = e > 0.1
        rest = float(e[~big].square().mean().sqrt()) if (~big).any() else float("nan")
        top = [round(v, 3) for v in e.sort(descending=True).values[:6].tolist()]
        print(f"{case} NFE {nfe} {spec} ({calls} calls): RMSE {peers.rmse(out, ref):.4g}; samples with error > 0.1: "
              f"{int(big.sum())}/{n}; RMSE of the rest {rest:.4g}; largest {top}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
