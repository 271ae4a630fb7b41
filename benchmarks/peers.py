"""Side by side: difflab's samplers and diffusers' schedulers on the same exact eps-model (docs/benchmarks.md).

    pip install -c constraints.txt -e '.[bench]'       # diffusers==0.42.1, torch kept at the local wheel
    OMP_NUM_THREADS=1 python benchmarks/peers.py --json outputs/peers.json --markdown outputs/peers.md

Every run calls the exact Gaussian-mixture eps-model (difflab.analysis) under the discrete DDPM schedule of
Ho et al. (linear betas 1e-4..0.02, T = 1000), from the same noise, with every call counted by a wrapper
outside both libraries; error = RMSE to the exact probability-flow solution from the run's own start (x and
noise level) to its own end noise level (0, or a table's sigma_min where a scheduler stops there), solved
adaptively (DOP853, tolerance 1e-9). A budget of NFE k admits a run only if its counted calls are <= k.

diffusers' schedulers are driven as their docs say: set_timesteps(N), x = z * init_noise_sigma, then for each
timestep scale_model_input, the model, step(...).prev_sample (the sigma-space ones, Euler / Heun / LMS,
from x = z sqrt(sigma_0^2 + 1), so that every run's model sees the same x_vp = z at t = 1; their
init_noise_sigma is sigma_0 for linspace / trailing, a 2e-5 relative difference). Their model receives integer or interpolated
timesteps tau; the eps-model answers at the noise level sigma~(tau) = exp(interp(tau, 0..T-1, log sigma~_k))
that diffusers' own sigma <-> timestep interpolation assigns, so it is exact for what each scheduler asks.
k-diffusion 0.1.1 is not in the comparison: it imports torchvision, and no torchvision wheel on PyPI loads
beside torch 2.13.0+cpu (torchvision 0.28.0: "operator torchvision::nms does not exist").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from difflab.analysis import GaussianMixture, image_like_mixture, ring_mixture
from difflab.process import DiscreteVP
from difflab.sampling import SAMPLERS, fit_grid, make_grid, probability_flow
from difflab.utils.allocator import keep_freed_memory
from difflab.utils.files import atomic_write_text

f64 = torch.float64
NFES = (5, 10, 20, 30, 50, 100)
PROCESS = DiscreteVP()  # linear betas 1e-4..0.02, T = 1000
T = PROCESS.T
BETAS = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": T}


def broad_mixture(dim: int = 256, k: int = 6, seed: int = 1) -> GaussianMixture:
    """A higher-dimensional mixture with broad components: the image-like means at half scale, variances
    0.2-0.5 (so trajectories bend late and over a wide range of noise levels)."""
    base = image_like_mixture(dim=dim, k=k, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    return GaussianMixture(base.weights, 0.5 * base.means, 0.2 + 0.3 * torch.rand(k, dim, generator=g, dtype=f64))


CASES = {"ring": (ring_mixture, 512), "image64": (lambda: image_like_mixture(64, 10, 0), 256),
         "broad256": (broad_mixture, 256)}


# ---------------------------------------------------------------- the shared eps-model and reference
class Counter:
    """Counts calls of a model, outside every library under test."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def tilde_sigma(t: torch.Tensor) -> torch.Tensor:
    return PROCESS.sigma(t) / PROCESS.alpha(t)


LOG_SIGMA_TABLE = tilde_sigma((torch.arange(T, dtype=f64) + 1) / T).log().numpy()  # tau = 0..T-1


def t_of_tilde_sigma(s: float) -> float:
    """difflab time of a noise level sigma~ = sigma / alpha (0 for sigma~ = 0)."""
    if s <= 0:
        return 0.0
    return float(PROCESS.t_from_log_snr(torch.tensor(-math.log(s), dtype=f64)))


def diffusers_model(D):
    """eps(x, tau) for diffusers: the exact eps at diffusers' own noise level for tau."""

    def eps(x: torch.Tensor, tau) -> torch.Tensor:
        s = float(np.exp(np.interp(float(tau), np.arange(T), LOG_SIGMA_TABLE)))
        t = torch.full((x.shape[0],), t_of_tilde_sigma(s), dtype=f64)
        return D(x.to(f64), t).to(x.dtype)

    return eps


class References:
    """Exact probability-flow endpoints from (x_start at t0) to t1, cached by the start, end and x."""

    def __init__(self, D, tol: float = 1e-9):
        self.D, self.cache, self.tol = D, {}, tol

    def __call__(self, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        key = (round(t0, 9), round(t1, 9), round(float(x.to(f64).sum()), 2))  # float32 copies of one x share it
        if key not in self.cache:
            self.cache[key] = probability_flow(self.D, x.to(f64), [t0, t1], rtol=self.tol, atol=self.tol,
                                               method="DOP853")
        return self.cache[key]


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(f64) - b).square().mean().sqrt())


# ---------------------------------------------------------------- diffusers
def diffusers_configs(leading: bool = True) -> list[tuple[str, str, dict, str]]:
    """(label, scheduler class, options, state space 'vp' or 'sigma'). leading=False leaves out the 'leading'
    spacing, which starts below t = 1 (tau_0 = (N - 1) T // N) and so needs one more reference per N."""
    out = []
    spacings = [("leading", {"timestep_spacing": "leading"})] if leading else []
    spacings += [("trailing", {"timestep_spacing": "trailing"}), ("linspace", {"timestep_spacing": "linspace"})]
    grids = spacings + [("karras", {"use_karras_sigmas": True})]
    for sp, o in spacings:
        out.append((f"DDIM/{sp}", "DDIMScheduler", {**o, "set_alpha_to_one": True, "clip_sample": False}, "vp"))
        out.append((f"PNDM-PLMS/{sp}", "PNDMScheduler", {**o, "skip_prk_steps": True, "set_alpha_to_one": True}, "vp"))
    for g, o in grids:
        for order in (2, 3):
            out.append((f"DEIS-{order}/{g}", "DEISMultistepScheduler", {**o, "solver_order": order}, "vp"))
            out.append((f"DPM++{order}M/{g}", "DPMSolverMultistepScheduler",
                        {**o, "solver_order": order, "algorithm_type": "dpmsolver++"}, "vp"))
            if g in ("karras", "linspace"):  # the singlestep scheduler has no timestep_spacing: its own grid
                out.append((f"DPM++{order}S/{'karras' if g == 'karras' else 'default'}", "DPMSolverSinglestepScheduler",
                            {"use_karras_sigmas": g == "karras", "solver_order": order,
                             "algorithm_type": "dpmsolver++"}, "vp"))
            for bh in ("bh1", "bh2"):
                out.append((f"UniPC-{bh}-{order}/{g}", "UniPCMultistepScheduler",
                            {**o, "solver_order": order, "solver_type": bh}, "vp"))
        out.append((f"Euler/{g}", "EulerDiscreteScheduler", o, "sigma"))
        out.append((f"Heun/{g}", "HeunDiscreteScheduler", o, "sigma"))
        out.append((f"LMS/{g}", "LMSDiscreteScheduler", o, "sigma"))
    return out


def _final_tilde_sigma(sched) -> float:
    if hasattr(sched, "sigmas") and sched.sigmas is not None and len(sched.sigmas):
        return float(sched.sigmas[-1])
    return 0.0  # DDIM / PNDM with set_alpha_to_one: the last step lands on the data


def run_diffusers(cls_name: str, options: dict, space: str, steps: int, z: torch.Tensor, D, refs: References):
    calls, out, ref = diffusers_endpoint(cls_name, options, space, steps, z, D, refs)
    return calls, rmse(out, ref)


def diffusers_endpoint(cls_name: str, options: dict, space: str, steps: int, z: torch.Tensor, D, refs: References):
    """(calls, the run's endpoint in VP scale, its exact reference)."""
    import diffusers

    sched = getattr(diffusers, cls_name)(**BETAS, **options)
    sched.set_timesteps(steps)
    model = Counter(diffusers_model(D))
    tau0 = float(sched.timesteps[0])
    s0 = float(np.exp(np.interp(tau0, np.arange(T), LOG_SIGMA_TABLE)))
    x = z * float(sched.init_noise_sigma)
    if space == "sigma":  # x = z sqrt(sigma_0^2 + 1): the model sees x_vp = z, as in every other run
        s0 = float(sched.sigmas[0])
        x = z * math.sqrt(s0**2 + 1)
    x_vp0 = x / math.sqrt(1 + s0**2) if space == "sigma" else x
    for tau in sched.timesteps:
        eps = model(sched.scale_model_input(x, tau), tau)
        x = sched.step(eps, tau, x).prev_sample
    s1 = _final_tilde_sigma(sched)
    x_vp1 = x / math.sqrt(1 + s1**2) if space == "sigma" else x
    return model.calls, x_vp1, refs(x_vp0, t_of_tilde_sigma(s0), t_of_tilde_sigma(s1))


def diffusers_steps(cls_name: str, nfe: int) -> int:
    if cls_name == "HeunDiscreteScheduler":
        return max(1, (nfe + 1) // 2)
    if cls_name == "PNDMScheduler":
        return max(1, nfe - 1)
    return nfe


# ---------------------------------------------------------------- difflab
DIFFLAB_SAMPLERS = {"ddim": ("ddim", {}), "dpmpp_2m": ("dpmpp_2m", {}), "dpmpp_3m": ("dpmpp_3m", {}),
                    "unipc": ("unipc", {}), "unipc_3": ("unipc", {"order": 3}), "deis": ("deis", {}),
                    "deis_logrho": ("deis", {"basis": "logrho"}), "ipndm": ("ipndm", {}), "plms": ("plms", {}),
                    "lms": ("lms", {}), "heun": ("heun", {}), "bespoke": ("bespoke", {})}
FITTED_ONLY = ("bespoke",)  # its fixed-grid form is deis (no weights fitted): not run on the fixed grids
DIFFLAB_GRIDS = {"trailing": ("trailing", {}), "leading": ("leading", {}), "linspace": ("linspace", {}),
                 "logsnr": ("logsnr", {}), "karras": ("karras", {}), "uniform": ("uniform", {}),
                 "poly2": ("polynomial", {"rho": 2.0}), "poly3": ("polynomial", {"rho": 3.0})}


def difflab_steps(sampler: str, nfe: int) -> int:
    if sampler == "heun":
        return max(1, (nfe + 1) // 2)
    if sampler == "plms":
        return max(1, nfe - 1)
    return nfe


def run_difflab(sampler: str, options: dict, grid, steps: int, z: torch.Tensor, D, refs):
    """grid: (name, options) of a fixed grid, or the times of a fitted one."""
    calls, out, ref = difflab_endpoint(sampler, options, grid, steps, z, D, refs)
    return calls, rmse(out, ref)


def difflab_endpoint(sampler: str, options: dict, grid, steps: int, z: torch.Tensor, D, refs):
    """(calls, the run's endpoint, its exact reference)."""
    ts = grid if isinstance(grid, torch.Tensor) else make_grid(PROCESS, grid[0], steps, **grid[1])
    model = Counter(D)
    model.parameterization, model.process = D.parameterization, D.process
    x = z  # x_T = z at t = 1 (sigma(1) = 0.99998), the x_vp every diffusers run starts from
    out = SAMPLERS[sampler](model, x, ts, **options)
    return model.calls, out, refs(x, float(ts[0]), float(ts[-1]))


# ---------------------------------------------------------------- the run
def fitted_grid(sampler: str, options: dict, steps: int, D, dim: int, pilot: int, max_evals: int = 150,
                start=None):
    """difflab.sampling.fit_grid on its own pilot batch (seed 1, independent of the measured z); every call
    of the fit is in the returned grid's fit_nfe, reported as a one-time set-up beside the sampling NFE.
    max_evals: Nelder-Mead's solver runs, or the bespoke solver's gradient iterations; start: the bespoke
    fit's (grid, weights) start, or a list of them."""
    return fit_grid(D, steps, sampler, shape=(dim,), options=options, pilot=pilot, seed=1, max_evals=max_evals,
                    dtype=f64, start=start if sampler == "bespoke" else None)


def run_case(name: str, nfes=NFES, log=print, peers: bool = True, leading: bool = True,
             tol: float = 1e-9, fitted: tuple[str, ...] = (), pilot: int = 256, fixed: bool = True,
             max_evals: int = 150, bespoke_start=None) -> list[dict]:
    make, n = CASES[name]
    mixture = make()
    D = mixture.denoiser(PROCESS, "eps")
    refs = References(D, tol)
    z = torch.randn(n, mixture.dim, generator=torch.Generator().manual_seed(0), dtype=f64)
    rows = []

    def record(library, label, nfe, fn, *args, **extra):
        start = time.perf_counter()
        try:
            calls, err = fn(*args)
        except Exception as e:  # noqa: BLE001 - a peer configuration that cannot run is reported, not fatal
            log(f"{name} {library} {label} NFE {nfe}: failed ({type(e).__name__}: {e})")
            return
        if calls <= nfe and math.isfinite(err):
            rows.append({"case": name, "library": library, "config": label, "nfe_budget": nfe, "nfe": calls,
                         "rmse": err, **extra})
        log(f"{name} {library} {label} budget {nfe}: {calls} calls, rmse {err:.4g} ({time.perf_counter() - start:.1f}s)")

    for nfe in nfes:
        for label, (sampler, options) in DIFFLAB_SAMPLERS.items() if fixed else ():
            if label in FITTED_ONLY:
                continue
            for g, grid in DIFFLAB_GRIDS.items():
                steps = difflab_steps(sampler, nfe)
                record("difflab", f"{label}/{g}", nfe, run_difflab, sampler, options, grid, steps, z, D, refs)
        for label in fitted:
            sampler, options = DIFFLAB_SAMPLERS[label]
            steps = difflab_steps(sampler, nfe)
            start = time.perf_counter()
            fg = fitted_grid(sampler, options, steps, D, mixture.dim, pilot, max_evals, bespoke_start)
            log(f"{name} fitted {label} NFE {nfe}: fit {fg.fit_nfe} calls x {pilot} ({time.perf_counter() - start:.0f}s)"
                + (f", start {fg.start}" if fg.start else "") + f", held-out pilot RMSE {fg.pilot_rmse:.4g}")
            fitted_options = options if fg.weights is None else {**options, "weights": fg.weights}  # bespoke's table
            record("difflab-fitted", f"{label}/fitted", nfe, run_difflab, sampler, fitted_options, fg.times, steps, z,
                   D, refs, fit_nfe=fg.fit_nfe, pilot=pilot, start=fg.start, pilot_rmse=fg.pilot_rmse)
        if peers:
            for label, cls_name, options, space in diffusers_configs(leading):
                steps = diffusers_steps(cls_name, nfe)
                record("diffusers", label, nfe, run_diffusers, cls_name, options, space, steps, z.float(), D, refs)
    return rows


def summary(rows: list[dict]) -> str:
    """Per case and NFE: the best difflab configuration, the best peer, their ratio; and difflab's default."""
    lines = ["| case | NFE | best difflab | RMSE | best diffusers | RMSE | peer / difflab |", "|---|---|---|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        for nfe in sorted({r["nfe_budget"] for r in rows if r["case"] == case}):
            sub = [r for r in rows if r["case"] == case and r["nfe_budget"] == nfe]
            ours = [r for r in sub if r["library"] == "difflab"]
            peer = [r for r in sub if not r["library"].startswith("difflab")]
            if not ours or not peer:
                continue
            a, b = min(ours, key=lambda r: r["rmse"]), min(peer, key=lambda r: r["rmse"])
            lines.append(f"| {case} | {nfe} | {a['config']} ({a['nfe']}) | {a['rmse']:.3g} | {b['config']} ({b['nfe']}) "
                         f"| {b['rmse']:.3g} | {b['rmse'] / a['rmse']:.2f} |")
    fitted = [r for r in rows if r["library"] == "difflab-fitted"]
    if fitted:
        lines += ["", "| case | NFE | fitted grid | RMSE | its set-up (calls x pilot) |", "|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['nfe_budget']} | {r['config']} ({r['nfe']}) | {r['rmse']:.3g} | "
                  f"{r['fit_nfe']} x {r['pilot']} |" for r in fitted]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    keep_freed_memory()  # the bespoke fit reallocates large buffers every iteration
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--nfes", nargs="+", type=int, default=list(NFES))
    parser.add_argument("--no-peers", action="store_true", help="difflab only (diffusers not installed)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-leading", action="store_true", help="leave out diffusers' 'leading' spacing")
    parser.add_argument("--tol", type=float, default=1e-9, help="tolerance of the reference ODE solves")
    parser.add_argument("--fitted", nargs="*", default=[], choices=list(DIFFLAB_SAMPLERS),
                        help="difflab samplers to also run on a grid fitted by fit_grid (set-up reported)")
    parser.add_argument("--pilot", type=int, default=256, help="the fitted grids' pilot batch")
    parser.add_argument("--max-evals", type=int, default=150,
                        help="fit_grid's max_evals: Nelder-Mead solver runs, or the bespoke solver's iterations")
    parser.add_argument("--no-fixed", action="store_true", help="leave out difflab's fixed grids")
    parser.add_argument("--bespoke-start", nargs=2, metavar=("GRID", "WEIGHTS"), action="append",
                        help="where the bespoke fit starts, e.g. trailing ipndm (default: the DEIS default grid); "
                        "repeat it for several starts on one pilot, the lowest fitting loss kept")
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    for case in a.cases:
        rows += run_case(case, a.nfes, log=(lambda m: None) if a.quiet else (lambda m: print(m, flush=True)),
                         peers=not a.no_peers, leading=not a.no_leading, tol=a.tol, fitted=tuple(a.fitted),
                         pilot=a.pilot, fixed=not a.no_fixed, max_evals=a.max_evals,
                         bespoke_start=[tuple(st) for st in a.bespoke_start] if a.bespoke_start else None)
        if a.json:
            atomic_write_text(a.json, json.dumps(rows, indent=1))
    report = (f"Peers benchmark ({time.perf_counter() - start:.0f} s, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d')})\n\n" + summary(rows))
    if a.markdown:
        atomic_write_text(a.markdown, report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
