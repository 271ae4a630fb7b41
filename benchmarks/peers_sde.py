"""Side by side: difflab's stochastic samplers and diffusers' stochastic schedulers (issue 9, docs/benchmarks.md).

    pip install -c constraints.txt -e '.[bench]'       # diffusers==0.42.1, torchsde==0.2.6, torch kept local
    OMP_NUM_THREADS=1 python benchmarks/peers_sde.py --json outputs/peers_sde.json --markdown outputs/peers_sde.md

The model, the call counter and the sigma~ <-> timestep helpers are benchmarks/peers.py's: every run calls the
exact Gaussian-mixture eps-model under the discrete DDPM schedule of Ho et al. (linear betas 1e-4..0.02,
T = 1000), with every call counted outside both libraries; a budget of NFE k admits a run only if its counted
calls are <= k. diffusers' schedulers are driven as their docs say (set_timesteps, init_noise_sigma,
scale_model_input, step(..., generator=g) where step takes a generator; DPMSolverSDEScheduler draws from
its torchsde Brownian tree seeded by noise_sampler_seed).

Both libraries start from the same float32 x_T = z per seed and draw their noise with torch.randn from
torch.Generator().manual_seed(seed) in float32, so that a sampler that draws one N(0, I) per step consumes the
same stream in both (common random numbers: diffusers' DDPM and difflab's ddpm on one grid give nearly the
same samples), and the difflab / peer quotient is paired by seed.

Quality: the SW2 ratio. Per case, one fresh exact reference set B of n points and P fixed random directions
(float64); a run's n samples x give SW2(x, B); the floor is SW2(A_r, B) for R independent exact sets A_r of
n points, reported as mean and standard deviation (so a reader can tell a 1.1x difference from noise);
ratio = SW2(x, B) / mean floor (1 = as good as exact sampling at this n). Every configuration runs on S seeds
(seed s: x_T and the sampler's noise); a cell's best configuration on each side is then rerun on S fresh
seeds, so that the reported best is not the luckiest of many noisy minima (the selection bias of a minimum
over ~60 configurations against ~30).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import (  # noqa: E402 - the deterministic harness's model, counter and helpers, not a copy
    BETAS,
    DIFFLAB_GRIDS,
    PROCESS,
    Counter,
    _final_tilde_sigma,
    diffusers_model,
)

from difflab.analysis import image_like_mixture, ring_mixture  # noqa: E402
from difflab.sampling import SAMPLERS, make_grid  # noqa: E402
from difflab.utils.files import atomic_write_text  # noqa: E402

f64 = torch.float64
NFES = (20, 50, 100)
CASES = {"ring": (ring_mixture, 4096, 128), "image64": (lambda: image_like_mixture(64, 10, 0), 2048, 256)}  # n, P
GRIDS = {k: v for k, v in DIFFLAB_GRIDS.items() if k != "leading"}

# label -> (sampler, options, NFE per step: calls for `steps` steps)
DIFFLAB_SAMPLERS = {
    "ddpm": ("ddpm", {}, lambda n: n),
    "ddpm_beta": ("ddpm", {"variance": "beta"}, lambda n: n),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}, lambda n: n),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", {}, lambda n: n),
    "dpmpp_3m_sde_pub": ("dpmpp_3m_sde", {"published": True}, lambda n: n),
    "dpmpp_sde": ("dpmpp_sde", {}, lambda n: 2 * n - 1),
    "euler_maruyama": ("euler_maruyama", {}, lambda n: n),
    "pc": ("pc", {}, lambda n: 2 * n),
}


def steps_for(calls_of, nfe: int) -> int:
    """The most steps whose calls fit the budget."""
    n = nfe
    while n > 1 and calls_of(n) > nfe:
        n -= 1
    return n


# ---------------------------------------------------------------- the exact eps-model, fast
class MixtureEps:
    """The exact eps of a diagonal Gaussian mixture under PROCESS, eps = -sigma grad log p_t (the mixture's own
    ExactMixtureDenoiser, in eps form), for a batch at ONE time t: with v_k = alpha^2 var_k + sigma^2 (K, D),
    log N_k(x) = -1/2 [x^2 . 1/v_k - 2 alpha x . mu_k/v_k + alpha^2 mu_k^2 . 1/v_k + sum log 2 pi v_k] and
    grad log p_t = -(x * (r @ 1/v) - alpha r @ (mu/v)), r = softmax_k(log w_k + log N_k): three matrix
    products instead of (B, K, D) tensors. Checked against mixture.denoiser at construction (1e-9)."""

    parameterization = "eps"

    def __init__(self, mixture):
        self.process, self.mu, self.var, self.logw = PROCESS, mixture.means, mixture.variances, mixture.weights.log()
        g = torch.Generator().manual_seed(7)
        exact = mixture.denoiser(PROCESS, "eps")
        for t in (0.002, 0.05, 0.3, 0.9, 1.0):
            x = 2 * torch.randn(64, mixture.dim, generator=g, dtype=f64)
            tt = torch.full((64,), t, dtype=f64)
            torch.testing.assert_close(self(x, tt), exact(x, tt), rtol=1e-9, atol=1e-9)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        t0 = t.reshape(-1)[:1].to(f64)
        if bool((t.reshape(-1) != t0).any()):
            raise ValueError("MixtureEps answers one time per batch")
        a, s = float(PROCESS.alpha(t0)), float(PROCESS.sigma(t0))
        xf = x.reshape(x.shape[0], -1).to(f64)
        inv_v = 1.0 / (a * a * self.var + s * s)  # (K, D)
        mu_v = self.mu * inv_v
        log_n = -0.5 * ((xf * xf) @ inv_v.T - 2 * a * xf @ mu_v.T + (a * a * (self.mu * mu_v).sum(1)
                        - inv_v.log().sum(1) + self.mu.shape[1] * math.log(2 * math.pi)))
        r = torch.softmax(self.logw + log_n, dim=1)  # (B, K)
        score = -(xf * (r @ inv_v) - a * (r @ mu_v))
        return (-s * score).reshape(x.shape).to(x.dtype)


# ---------------------------------------------------------------- diffusers' stochastic schedulers
def diffusers_configs() -> list[tuple[str, str, dict, str, dict]]:
    """(label, class, constructor options, state space 'vp' or 'sigma', step options)."""
    out = []
    spacings = [(sp, {"timestep_spacing": sp}) for sp in ("leading", "trailing", "linspace")]
    karras = ("karras", {"use_karras_sigmas": True})
    for sp, o in spacings:
        out.append((f"DDPM/{sp}", "DDPMScheduler", {**o, "clip_sample": False}, "vp", {}))
        out.append((f"DDIM-eta1/{sp}", "DDIMScheduler", {**o, "clip_sample": False, "set_alpha_to_one": True}, "vp",
                    {"eta": 1.0}))
        out.append((f"EulerA/{sp}", "EulerAncestralDiscreteScheduler", o, "sigma", {}))
    for g, o in [*spacings, karras]:
        out.append((f"KDPM2A/{g}", "KDPM2AncestralDiscreteScheduler", o, "sigma", {}))
        for order in (2, 3):
            out.append((f"SDE-DPM++{order}M/{g}", "DPMSolverMultistepScheduler",
                        {**o, "solver_order": order, "algorithm_type": "sde-dpmsolver++"}, "vp", {}))
        out.append((f"SDE-DPM++2M-heun/{g}", "DPMSolverMultistepScheduler",
                    {**o, "solver_order": 2, "algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, "vp", {}))
        out.append((f"DPMSolverSDE/{g}", "DPMSolverSDEScheduler", o, "sigma", {}))
    return out


def _make_scheduler(cls_name: str, options: dict, nfe: int, seed: int):
    """The scheduler set to the most steps whose timesteps (one model call each) fit the budget."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    extra = {"noise_sampler_seed": seed} if cls_name == "DPMSolverSDEScheduler" else {}
    probe = cls(**BETAS, **options, **extra)  # constructing is slow for some (KDPM2A: ~1 s), probing is not

    def fits(steps: int) -> bool:
        probe.set_timesteps(steps)
        return len(probe.timesteps) <= nfe

    lo, hi = 1, nfe  # the largest steps that fit: timesteps grow with steps
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    sched = cls(**BETAS, **options, **extra)
    sched.set_timesteps(lo)
    return sched


def run_diffusers(cls_name, options, space, step_options, nfe, z, D, seed):
    sched = _make_scheduler(cls_name, options, nfe, seed)
    model = Counter(diffusers_model(D))
    g = torch.Generator().manual_seed(seed)
    takes_generator = "generator" in __import__("inspect").signature(sched.step).parameters
    x = z * float(sched.init_noise_sigma)
    if space == "sigma":  # x = z sqrt(sigma_0^2 + 1): the model sees x_vp = z, as in every other run
        x = z * math.sqrt(float(sched.sigmas[0]) ** 2 + 1)
    for tau in sched.timesteps:
        eps = model(sched.scale_model_input(x, tau), tau)
        kw = {"generator": g} if takes_generator else {}
        x = sched.step(eps, tau, x, **kw, **step_options).prev_sample
    s1 = _final_tilde_sigma(sched) if space == "sigma" else 0.0
    return model.calls, x.to(f64) / math.sqrt(1 + s1**2)


def run_difflab(sampler, options, calls_of, grid, nfe, z, D, seed):
    ts = make_grid(PROCESS, grid[0], steps_for(calls_of, nfe), **grid[1])
    model = Counter(D)
    model.parameterization, model.process = D.parameterization, D.process
    out = SAMPLERS[sampler](model, z, ts, generator=torch.Generator().manual_seed(seed), **options)
    return model.calls, out


# ---------------------------------------------------------------- the statistic
class SW2:
    """SW2 to one fixed exact reference B along fixed directions, and its floor over R exact sets."""

    def __init__(self, mixture, n: int, projections: int, floor_repeats: int, seed: int = 12345):
        g = torch.Generator().manual_seed(seed)
        self.theta = torch.randn(mixture.dim, projections, generator=g, dtype=f64)
        self.theta /= self.theta.norm(dim=0, keepdim=True)
        self.ref = (mixture.sample(n, g)[0].to(f64) @ self.theta).sort(dim=0).values
        self.floors = [self(mixture.sample(n, g)[0]) for _ in range(floor_repeats)]
        self.floor = statistics.fmean(self.floors)

    def __call__(self, x: torch.Tensor) -> float:
        px = (x.to(f64) @ self.theta).sort(dim=0).values
        return float((px - self.ref).square().mean().sqrt())  # equal sizes: mean of sorted differences


# ---------------------------------------------------------------- the run
def run_case(name: str, nfes, seeds: int, confirm_seeds: int, top: int, projections: int | None,
             floor_repeats: int, log=print, peers: bool = True, only=None) -> tuple[list[dict], dict]:
    make, n, default_projections = CASES[name]
    projections = projections or default_projections
    mixture = make()
    D = MixtureEps(mixture)
    start = time.perf_counter()
    stat = SW2(mixture, n, projections, floor_repeats)
    floor = {"case": name, "n": n, "projections": projections, "repeats": floor_repeats,
             "mean": stat.floor, "std": statistics.stdev(stat.floors), "values": stat.floors}
    log(f"{name}: floor {stat.floor:.5g} +- {floor['std']:.2g} ({time.perf_counter() - start:.1f}s)")

    def z_of(seed):
        return torch.randn(n, mixture.dim, generator=torch.Generator().manual_seed(1000 + seed), dtype=f64)

    def measure(library, label, nfe, fn, args, seed_list):
        ratios, calls = [], 0
        t0 = time.perf_counter()
        for s in seed_list:
            z = z_of(s).float()  # float32 for both: the same torch.randn stream feeds both libraries' noise
            try:
                calls, x = fn(*args, nfe, z, D, s)
            except Exception as e:  # noqa: BLE001 - a configuration that cannot run is reported, not fatal
                log(f"{name} {library} {label} NFE {nfe}: failed ({type(e).__name__}: {e})")
                return None
            ratios.append(stat(x) / stat.floor if bool(torch.isfinite(x).all()) else math.inf)
        mean = statistics.fmean(ratios)
        log(f"{name} {library} {label} budget {nfe}: {calls} calls, ratio {mean:.4g} "
            f"({' '.join(f'{r:.3f}' for r in ratios)}) {time.perf_counter() - t0:.1f}s")
        if calls > nfe or not math.isfinite(mean):
            return None
        return {"case": name, "library": library, "config": label, "nfe_budget": nfe, "nfe": calls,
                "ratios": ratios, "ratio": mean, "seeds": list(seed_list)}

    configs = []
    for label, (sampler, options, calls_of) in DIFFLAB_SAMPLERS.items():
        for g, grid in GRIDS.items():
            configs.append(("difflab", f"{label}/{g}", run_difflab, (sampler, options, calls_of, grid)))
    if peers:
        for label, cls_name, options, space, step_options in diffusers_configs():
            configs.append(("diffusers", label, run_diffusers, (cls_name, options, space, step_options)))
    if only:
        configs = [c for c in configs if any(o in c[1] for o in only)]
    rows, confirmed = [], []
    for nfe in nfes:
        cell = [r for c in configs if (r := measure(c[0], c[1], nfe, c[2], c[3], range(seeds))) is not None]
        rows += cell
        for library in ("difflab", "diffusers"):  # the `top` best of each side, again on fresh seeds
            for best in sorted((r for r in cell if r["library"] == library), key=lambda r: r["ratio"])[:top]:
                c = next(c for c in configs if c[0] == library and c[1] == best["config"])
                again = measure(library, c[1], nfe, c[2], c[3], range(seeds, seeds + confirm_seeds))
                if again is not None:
                    confirmed.append({**again, "selected_ratio": best["ratio"]})
    return rows + [{**r, "confirm": True} for r in confirmed], floor


def summary(rows: list[dict], floors: list[dict]) -> str:
    lines = ["| case | n | floor SW2 (mean +- sd over repeats) | floor sd / mean |", "|---|---|---|---|"]
    for f in floors:
        lines.append(f"| {f['case']} | {f['n']} | {f['mean']:.4g} +- {f['std']:.2g} ({f['repeats']}) "
                     f"| {f['std'] / f['mean']:.3f} |")
    lines += ["", "Best configuration per side (the best of each side's top screened configurations, rerun on fresh "
              "seeds: mean SW2 ratio +- its standard error); goal: difflab <= 1.1 x peer.", "",
              "| case | NFE | best difflab | ratio | best diffusers | ratio | difflab / peer (paired by seed) | goal |",
              "|---|---|---|---|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        for nfe in sorted({r["nfe_budget"] for r in rows if r["case"] == case}):
            best = {}
            for lib in ("difflab", "diffusers"):
                c = [r for r in rows if r.get("confirm") and r["case"] == case and r["nfe_budget"] == nfe
                     and r["library"] == lib]
                best[lib] = min(c, key=lambda r: r["ratio"]) if c else None
            a, b = best["difflab"], best["diffusers"]
            if a is None or b is None:
                continue

            def fmt(r):
                se = statistics.stdev(r["ratios"]) / math.sqrt(len(r["ratios"])) if len(r["ratios"]) > 1 else 0.0
                return f"{r['ratio']:.3f} +- {se:.3f}"

            paired = [x / y for x, y in zip(a["ratios"], b["ratios"], strict=True)]  # same seeds, same x_T
            q = statistics.fmean(paired)
            se = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else 0.0
            lines.append(f"| {case} | {nfe} | {a['config']} ({a['nfe']}) | {fmt(a)} | {b['config']} ({b['nfe']}) "
                         f"| {fmt(b)} | {q:.3f} +- {se:.3f} | {'met' if q <= 1.1 else 'NOT met'} |")
    lines += ["", "Screening: best grid / spacing per sampler (SW2 ratio on the screening seeds):", ""]
    for case in dict.fromkeys(r["case"] for r in rows):
        nfes = sorted({r["nfe_budget"] for r in rows if r["case"] == case})
        lines += [f"| {case}: sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
                  "|---|" + "---|" * len(nfes)]
        families = dict.fromkeys((r["library"], r["config"].split("/")[0]) for r in rows if r["case"] == case)
        for lib, fam in families:
            cells = []
            for k in nfes:
                c = [r for r in rows if not r.get("confirm") and r["case"] == case and r["nfe_budget"] == k
                     and r["library"] == lib and r["config"].split("/")[0] == fam]
                if c:
                    r = min(c, key=lambda r: r["ratio"])
                    cells.append(f"{r['ratio']:.3f} ({r['config'].split('/')[1]}, {r['nfe']})")
                else:
                    cells.append("-")
            lines.append(f"| {lib} {fam} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- per-step overhead
def overhead(shape=(64, 3, 32, 32), steps: int = 50, repeats: int = 5) -> dict[str, float]:
    """ms per step with a denoiser that returns a precomputed tensor (the method of docs/benchmarks.md,
    Per-step overhead: float32 on CPU, fastest of `repeats`), for difflab's SDE samplers and diffusers'
    SDE-DPM-Solver++ schedulers driven by the same constant eps."""
    import diffusers

    g = torch.Generator().manual_seed(0)
    x, value = torch.randn(shape, generator=g), torch.randn(shape, generator=g)

    class Constant:
        parameterization, process = "eps", PROCESS

        def __call__(self, x, t, cond=None):
            return value

    ts = make_grid(PROCESS, "logsnr", steps)
    out = {}
    for label in ("ddpm", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_3m_sde_pub"):
        sampler, options, _ = DIFFLAB_SAMPLERS[label]
        best = math.inf
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            SAMPLERS[sampler](Constant(), x, ts, generator=torch.Generator().manual_seed(0), **options)
            best = min(best, time.perf_counter() - t0)
        out[f"difflab {label}"] = best / steps * 1e3
    for label, order in (("SDE-DPM++2M", 2), ("SDE-DPM++3M", 3)):
        best = math.inf
        for _ in range(repeats + 1):
            sched = diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=order,
                                                          algorithm_type="sde-dpmsolver++")
            sched.set_timesteps(steps)
            gen, y = torch.Generator().manual_seed(0), x
            t0 = time.perf_counter()
            for tau in sched.timesteps:
                y = sched.step(value, tau, sched.scale_model_input(y, tau), generator=gen).prev_sample
            best = min(best, time.perf_counter() - t0)
        out[f"diffusers {label}"] = best / len(sched.timesteps) * 1e3
    return out


# ---------------------------------------------------------------- the exact Gaussian target
GAUSS_MU, GAUSS_VAR = [0.5, -1.0, 2.0, 0.0], [0.04, 0.25, 1.0, 4.0]


def gaussian_check(n: int = 50000, nfes=NFES, log=print, peers: bool = True) -> list[dict]:
    """Variance of the SDE-DPM-Solver++ family on a 4-D Gaussian N(mu, diag(0.04, 0.25, 1, 4)), whose samples
    have a known law: the largest relative variance error over the dimensions (its standard error is
    sqrt(2 / n), 0.6 % at n = 50000), per configuration and NFE; same x_T for all."""
    from difflab.analysis.gaussian_mixture import GaussianMixture

    mixture = GaussianMixture(torch.ones(1), torch.tensor([GAUSS_MU], dtype=f64), torch.tensor([GAUSS_VAR], dtype=f64))
    D, var = MixtureEps(mixture), mixture.variances[0]
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=f64)
    configs = [("diffusers", f"SDE-DPM++{o}M/{g}", run_diffusers,
                ("DPMSolverMultistepScheduler", {**go, "solver_order": o, "algorithm_type": "sde-dpmsolver++"}, "vp", {}))
               for o in (2, 3) for g, go in (("linspace", {}), ("karras", {"use_karras_sigmas": True}))] if peers else []
    configs += [("difflab", f"{label}/{g}", run_difflab, (*DIFFLAB_SAMPLERS[label], GRIDS[g]))
                for label in ("dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_3m_sde_pub") for g in ("logsnr", "karras", "poly2",
                                                                                          "linspace", "trailing")]
    rows = []
    for library, label, fn, args in configs:
        for nfe in nfes:
            calls, x = fn(*args, nfe, z if library == "difflab" else z.float(), D, 1)
            err = float((x.to(f64).var(0) / var - 1).abs().max())
            rows.append({"library": library, "config": label, "nfe": calls, "max_rel_var_error": err})
            log(f"gaussian {library} {label} NFE {calls}: max relative variance error {err:.4f}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--nfes", nargs="+", type=int, default=list(NFES))
    parser.add_argument("--seeds", type=int, default=2, help="seeds per configuration in the screening")
    parser.add_argument("--confirm-seeds", type=int, default=24, help="fresh seeds for each side's best configurations")
    parser.add_argument("--top", type=int, default=3, help="configurations per side and cell to confirm")
    parser.add_argument("--projections", type=int, help="random directions (default: 128 on the ring, 256 at 64-D)")
    parser.add_argument("--floor-repeats", type=int, default=64)
    parser.add_argument("--only", nargs="+", help="configurations whose label contains one of these")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--overhead", action="store_true", help="also time the per-step overhead")
    parser.add_argument("--gaussian", action="store_true", help="only the variance check on an exact 4-D Gaussian")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--quiet", action="store_true")
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    log = (lambda m: None) if a.quiet else (lambda m: print(m, flush=True))
    rows, floors, result = [], [], {}
    if a.gaussian:
        g_rows = gaussian_check(nfes=a.nfes, log=log, peers=not a.no_peers)
        nfes = sorted({r["nfe"] for r in g_rows})
        table = ("| configuration | " + " | ".join(f"NFE {k}" for k in a.nfes) + " |\n|---|" + "---|" * len(a.nfes) + "\n")
        for label in dict.fromkeys(f"{r['library']} {r['config']}" for r in g_rows):
            vals = [f"{r['max_rel_var_error']:.4f} ({r['nfe']})" for r in g_rows if f"{r['library']} {r['config']}" == label]
            table += f"| {label} | " + " | ".join(vals) + " |\n"
        if a.json:
            atomic_write_text(a.json, json.dumps({"gaussian": g_rows, "nfes": nfes}, indent=1))
        if a.markdown:
            atomic_write_text(a.markdown, table)
        print(table)
        return 0
    for case in a.cases:
        r, f = run_case(case, a.nfes, a.seeds, a.confirm_seeds, a.top, a.projections, a.floor_repeats, log,
                        not a.no_peers, a.only)
        rows, floors = rows + r, floors + [f]
        result = {"rows": rows, "floors": floors, "seeds": a.seeds, "confirm_seeds": a.confirm_seeds, "top": a.top}
        if a.json:
            atomic_write_text(a.json, json.dumps(result, indent=1))
    report = (f"Stochastic peers benchmark ({time.perf_counter() - start:.0f} s, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d')}, {a.seeds} screening seed(s), top {a.top} per side confirmed on {a.confirm_seeds} fresh seeds)\n\n" + summary(rows, floors))
    if a.overhead:
        o = overhead()
        result["overhead_ms_per_step"] = o
        report += "\n| per-step overhead | ms / step |\n|---|---|\n" + "".join(f"| {k} | {v:.3f} |\n" for k, v in o.items())
        if a.json:
            atomic_write_text(a.json, json.dumps(result, indent=1))
    if a.markdown:
        atomic_write_text(a.markdown, report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
