"""Sweep difflab samplers over grids on the peers harness's exact mixtures (the same noises and references as
benchmarks/peers.py), each cell over the best diffusers RMSE of docs/benchmarks.md (not rerun: deterministic).

    OMP_NUM_THREADS=1 python benchmarks/peers_grid_sweep.py deis 1.0,1.25,1.5,1.75,2.0 out.json 10,20,30,50
    OMP_NUM_THREADS=1 python benchmarks/peers_grid_sweep.py lms trailing,linspace,1.5,logsnr out.json 20,30,50

argv: samplers (peers.py labels), grids (a name, or a number = the time-polynomial rho), output JSON, NFEs.
Prints every cell, then each configuration's worst cell and geometric mean over the best peer.
"""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import peers as P
import torch

BEST = {("ring",10):0.0629,("ring",20):0.0107,("ring",30):0.00702,("ring",50):0.00176,
        ("image64",10):0.07032,("image64",20):0.0215,("image64",30):0.00498,("image64",50):0.000769,
        ("broad256",10):0.03385,("broad256",20):0.0153,("broad256",30):0.00176,("broad256",50):0.000351}
samplers = sys.argv[1].split(",")
grids = [(g, {}) if not g[0].isdigit() else ("polynomial", {"rho": float(g)}) for g in sys.argv[2].split(",")]
nfes = [int(x) for x in sys.argv[4].split(",")]
out = []
for case in ["ring","image64","broad256"]:
    make, n = P.CASES[case]
    mix = make()
    D = mix.denoiser(P.PROCESS, "eps")
    refs = P.References(D, 1e-8)
    z = torch.randn(n, mix.dim, generator=torch.Generator().manual_seed(0), dtype=P.f64)
    for s in samplers:
        sampler, opts = P.DIFFLAB_SAMPLERS[s]
        for grid in grids:
            for nfe in nfes:
                steps = P.difflab_steps(sampler, nfe)
                calls, err = P.run_difflab(sampler, opts, grid, steps, z, D, refs)
                r = err / BEST[(case, nfe)]
                out.append(dict(case=case, s=s, rho=str(grid), nfe=nfe, rmse=err, ratio=r))
                print(case, s, grid, nfe, f"{err:.4g}", f"{r:.2f}", flush=True)
json.dump(out, open(sys.argv[3], "w"))
cfg = {}
for o in out:
    cfg.setdefault((o["s"], o["rho"]), []).append(o["ratio"])
for k, v in sorted(cfg.items(), key=lambda kv: max(kv[1])):
    print(k, "worst", round(max(v), 2), "gmean", round(math.exp(sum(map(math.log, v))/len(v)), 2))
