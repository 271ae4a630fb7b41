"""`difflab analyze creativity RUN...`: does a trained network create the way the ELS machine predicts?

For each run: sample the network from fixed noises, calibrate the LS and ELS patch sizes per noise level
on the network's own trajectories (calibration seeds disjoint from the evaluation seeds), sample the
ideal, LS and ELS machines (difflab.analysis) from the SAME noises with the same sampler and grid, and
report per-seed agreement (difflab.analysis.creativity.pearson_agreement) with its median, the
memorization check of every sampler's images (nearest-training-neighbour distance / the held-out
split's, difflab.metrics.memorization_check), and pictures: matched rows, the coarse-to-fine x0 strip,
the calibrated patch sizes, and seed 000's black/white example. Everything lands in OUT/creativity.json.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import Tensor

from difflab.analysis.creativity import (
    black_white_set,
    build_machine,
    calibrate_patch_sizes,
    pearson_agreement,
    x0_strip,
)
from difflab.analysis.local_score import DEFAULT_MAX_TABLE_ELEMENTS, check_patch_size
from difflab.config.factory import build_data, held_out_config
from difflab.data.shapes import Shapes, held_out_draw
from difflab.jobs.runs import LoadedRun, load_run
from difflab.metrics.lowdim import memorization_check
from difflab.nets.attention import count_attention_layers
from difflab.sampling.api import sample
from difflab.train.checkpoint import checkpoint_step
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write, atomic_write_json
from difflab.utils.progress import Progress
from difflab.utils.seeding import per_sample_noise
from difflab.viz import save_image_grid

CALIBRATION_SEED0 = 1_000_000  # calibration noises never coincide with evaluation seeds 0..n-1
METRIC = ("Pearson correlation of the two final images after centring (mean pixel removed) and normalizing "
          "(unit norm) each, per seed; median over seeds (as in Kamb & Ganguli's released code)")

LOCAL_MACHINES = ("ls", "els")  # the local machines a study can calibrate and sample beside the ideal one


def _stats(v: Tensor) -> dict:
    q = torch.quantile(v.to(torch.float64), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "mean": float(v.mean()), "n": len(v)}


def training_images(loaded: LoadedRun) -> tuple[Tensor, Tensor | None, str]:
    """The run's training images (N, C, H, W) float64 (no flips), its held-out images if it has any, and
    what those are in words. Procedural shapes: a fresh draw without the training items (held_out_draw)."""
    data = loaded.config.data
    data = replace(data, options={**data.options, "hflip": False}) if "hflip" in data.options else data
    train = build_data(data)
    if len(train.data_shape) != 3:
        raise DifflabError("the creativity study needs an image run (C, H, W); this run has vector data")
    held_cfg = held_out_config(loaded.config.data)

    def stack(ds) -> Tensor:
        return torch.stack([ds[i]["x"] for i in range(len(ds))]).to(torch.float64)

    if held_cfg is not None:
        held = build_data(held_cfg)
        return stack(train), stack(held), f"{held_cfg.name} {held_cfg.options} ({len(held)} images)"
    if isinstance(train, Shapes):
        held, words = held_out_draw(train)
        return stack(train), held.to(torch.float64), words
    return stack(train), None, "none: this data set has no held-out split (no memorization figures)"


def default_sizes(shape) -> list[int]:
    """Odd patch sizes from 1 up to 2 max(H, W) - 1 (a zero-padded patch that always covers the image)."""
    return list(range(1, 2 * max(shape[-2:]), 2))


def _sample(denoiser, x_T: Tensor, how: dict, bar: Progress | None = None) -> Tensor:
    """Final images in float64, clamped to the image range [-1, 1] as `difflab sample` does; `bar` advances
    once per sampler step."""
    callback = None if bar is None else (lambda step: bar.advance())
    with torch.no_grad():
        return sample(denoiser, x_T, callback=callback, **how).x.to(torch.float64).clamp(-1, 1)


def save_samples(path: Path, samples: dict[str, Tensor]) -> Path:
    """The final images of every sampler, float32 arrays in one .npz (no pickled objects), atomically."""
    arrays = {k: v.detach().cpu().float().numpy() for k, v in samples.items()}
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def _nearest(x: Tensor, train: Tensor) -> Tensor:
    d = torch.cdist(x.reshape(len(x), -1), train.reshape(len(train), -1))
    return train[d.argmin(1)]


def _figures(out: Path, name: str, rows: dict[str, Tensor], strips: dict[str, Tensor], strip_times, cal, n_show: int):
    """Matched rows, x0 strips, calibrated patch sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difflab.viz.io import save_figure

    scale = max(1, 96 // rows["network"].shape[-1])
    grid = torch.cat([r[:n_show] for r in rows.values()])
    paths = {"matched_rows": str(save_image_grid(grid.clamp(-1, 1).float(), out / f"{name}-matched.png", nrow=n_show,
                                                 scale=scale, caption="rows: " + ", ".join(rows)))}
    for kind, s in strips.items():  # (T, B, ...) -> each row one seed, columns t
        k = min(6, s.shape[1])
        pics = s[:, :k].transpose(0, 1).reshape(-1, *s.shape[2:])
        paths[f"strip_{kind}"] = str(save_image_grid(
            pics.clamp(-1, 1).float(), out / f"{name}-strip-{kind}.png", nrow=s.shape[0], scale=scale,
            caption=f"{kind}: x0 estimate at t = " + ", ".join(f"{t:.2f}" for t in strip_times)))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for kind, c in cal.items():
        ax.step(c.schedule.times, c.schedule.sizes, where="mid", label=kind)
    ax.set_xlabel("t (1 = noise)")
    ax.set_ylabel("calibrated patch size P")
    ax.invert_xaxis()
    ax.legend()
    paths["patch_sizes"] = str(save_figure(fig, out / f"{name}-patch-sizes.png"))
    plt.close(fig)
    return paths


def black_white_example(out: Path, process, shape, how: dict, n: int = 8, seed: int = 0) -> dict:
    """Seed 000's two-image set: ideal, LS (P = 1) and ELS (P = 3) samples from the same noises."""
    train = black_white_set(shape[-1], shape[0])
    x_T = per_sample_noise(range(seed, seed + n), shape, dtype=torch.float64) * float(process.sigma(torch.tensor(1.0)))
    rows = {"ideal": build_machine("ideal", train, process),
            "ls_P1": build_machine("ls", train, process, 1),
            "els_P3": build_machine("els", train, process, 3)}
    samples = {k: _sample(m, x_T, how) for k, m in rows.items()}
    grid = torch.cat(list(samples.values()))
    path = save_image_grid(grid.clamp(-1, 1).float(), out / "black-white.png", nrow=n,
                           scale=max(1, 96 // shape[-1]), caption="two training images (black, white); rows: " + ", ".join(rows))
    rms = {k: (v.reshape(n, 1, -1) - train.reshape(1, 2, -1)).pow(2).mean(-1).sqrt().min(1).values
           for k, v in samples.items()}  # RMS distance to the nearer training image
    novel = {k: float((d > 0.1).double().mean()) for k, d in rms.items()}
    return {"figure": str(path), "fraction_farther_than_0.1_rms_from_both": novel}


def run_creativity(runs: list[str | Path], out: str | Path, *, ema: bool = True, device: str = "cpu", **options) -> dict:
    """The creativity study of Kamb & Ganguli 2025 for each run folder in `runs` (same data and process):
    loads them and their training / held-out images, then `creativity_study(...)` with `options`."""
    loaded = {Path(r).name: load_run(r, ema=ema, device=device) for r in runs}
    if len(loaded) != len(runs):
        raise DifflabError("give runs with different folder names: results are keyed by folder name")
    train, held, heldout = training_images(next(iter(loaded.values())))
    return creativity_study(loaded, train, held, out, **options, ema=ema, heldout=heldout)


def creativity_study(loaded: dict[str, LoadedRun], train: Tensor, held: Tensor | None, out: str | Path, *,
                     n: int = 100, calibration_n: int = 16, sizes: list[int] | None = None,
                     sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
                     strip_times=(0.9, 0.7, 0.5, 0.3, 0.1, 0.0), boundary_broken: bool = True, n_show: int = 12,
                     ema: bool = True, heldout: str | None = None,
                     max_table_elements: int = DEFAULT_MAX_TABLE_ELEMENTS,
                     machines: tuple[str, ...] = LOCAL_MACHINES) -> dict:
    """Agreement, memorization and pictures for networks `loaded` (name -> run) trained on `train`;
    `heldout` says what `held` is (written to the report). `machines`: the local machines calibrated and
    sampled beside the ideal one ('ls', 'els' or both; the LS pass is the dearer one on large images)."""
    console = Console(markup=False, highlight=False)
    if n < 2 or calibration_n < 1:
        raise DifflabError(f"need at least 2 evaluation seeds and 1 calibration seed; got n={n}, calibration_n={calibration_n}")
    out = Path(out)
    first = next(iter(loaded.values()))
    shape = tuple(train.shape[1:])
    process = first.model.process
    s = first.config.sample
    sampler = s.sampler if sampler is None else sampler
    schedule = s.schedule if schedule is None else schedule
    steps = s.steps if steps is None else steps
    if steps < 1:
        raise DifflabError(f"steps must be at least 1, got {steps}")
    unknown = sorted(set(machines) - set(LOCAL_MACHINES))
    if unknown or not machines:
        raise DifflabError(f"--machine must be one or more of {', '.join(LOCAL_MACHINES)}; got "
                           f"{', '.join(machines) or 'none'}")
    machines = tuple(m for m in LOCAL_MACHINES if m in machines)  # the report's order, each once
    for P in sizes or []:  # refused before any sampling, not after the ideal machine's pass
        check_patch_size(P, *shape[-2:], "zeros")
    out.mkdir(parents=True, exist_ok=True)  # after the checks: a refused study leaves no folder
    how = {"sampler": sampler, "steps": steps, "schedule": schedule}
    sizes = default_sizes(shape) if sizes is None else sizes
    std = float(process.sigma(torch.tensor(1.0, dtype=torch.float64)))
    x_T = per_sample_noise(range(n), shape, dtype=torch.float64) * std
    x_cal = per_sample_noise(range(CALIBRATION_SEED0, CALIBRATION_SEED0 + calibration_n), shape) * std
    report: dict = {"metric": METRIC, "settings": {**how, "n": n, "calibration_n": calibration_n, "sizes": sizes,
                                                   "train_images": len(train), "shape": list(shape),
                                                   "boundary_broken": boundary_broken, "ema": ema, "machines": list(machines),
                                                   "heldout": heldout, "max_table_elements": max_table_elements},
                    "runs": {}}
    t0 = time.perf_counter()
    ideal = _sample(build_machine("ideal", train, process), x_T, how)
    console.print(f"ideal machine: {n} samples in {time.perf_counter() - t0:.0f} s")
    base = {k: build_machine(k, train, process, 1, boundary_broken=boundary_broken,
                             max_table_elements=max_table_elements) for k in machines}
    for name, ld in loaded.items():
        if tuple(ld.meta.data_shape) != shape or repr(ld.model.process) != repr(process):
            raise DifflabError(f"{name} was trained on other data or another process; compare runs one at a time")
        report["runs"][name] = _study_run(name, ld, train, held, ideal, base, x_T, x_cal, sizes, how, out,
                                          strip_times, min(n_show, n), console)
    report["black_white"] = black_white_example(out, process, shape, how)
    atomic_write_json(out / "creativity.json", report)
    console.print(f"wrote {out / 'creativity.json'} and figures in {out}")
    return report


def _memorization(samples: dict[str, Tensor], train: Tensor, held: Tensor | None) -> dict:
    """Nearest-training-neighbour distances of each sample set against the held-out baseline."""
    if held is None:
        return {}
    memo = {}
    for k, v in samples.items():
        m = memorization_check(v.float(), train.float(), held.float())
        memo[k] = {"ratio": m.ratio, "memorized_fraction": m.memorized_fraction,
                   "median_nn_distance": float(m.generated_distances.median()),
                   "heldout_median_nn_distance": float(m.heldout_distances.median())}
    return memo


def _study_run(name: str, ld: LoadedRun, train: Tensor, held: Tensor | None, ideal: Tensor, base: dict,
               x_T: Tensor, x_cal: Tensor, sizes: list[int], how: dict, out: Path, strip_times, n_show: int,
               console: Console) -> dict:
    """One network against the local machines of `base` (LS, ELS, calibrated to it) and the ideal machine, same
    noises."""
    net = _sample(ld.model, x_T.float(), how)
    cal, samples, machines = {}, {}, {}
    for kind in base:
        t0 = time.perf_counter()
        with Progress(how["steps"] * len(sizes), f"{name}: calibrate {kind}", unit="score") as bar:
            cal[kind] = calibrate_patch_sizes(ld.model, base[kind].with_patch_size, x_cal, sizes, callback=bar.advance,
                                              **how)
        machines[kind] = base[kind].with_patch_size(cal[kind].schedule)
        with Progress(how["steps"], f"{name}: sample {kind} ({len(x_T)} seeds)") as bar:
            samples[kind] = _sample(machines[kind], x_T, how, bar)
        console.print(f"{name}: {kind} calibrated (P = {list(cal[kind].schedule.sizes)}) and sampled in "
                      f"{time.perf_counter() - t0:.0f} s")
    samples["ideal"] = ideal
    nearest = _nearest(net, train)
    per_seed = {k: pearson_agreement(v, net) for k, v in samples.items()}
    per_seed["nearest_training_image"] = pearson_agreement(nearest, net)
    per_seed["other_seed"] = pearson_agreement(torch.roll(net, 1, 0), net)  # chance level
    rmse = {k: (v - net).pow(2).flatten(1).mean(1).sqrt() for k, v in samples.items()}
    k = min(6, len(x_T))
    local = "els" if "els" in machines else "ls"
    strips = {"network": x0_strip(ld.model, x_T[:k].float(), strip_times, **how)[0],
              local: x0_strip(machines[local], x_T[:k], strip_times, **how)[0]}
    rows = {"network": net, **{m: samples[m] for m in ("els", "ls") if m in samples}, "ideal": ideal,
            "nearest training": nearest}
    agreement = {k: _stats(v) for k, v in per_seed.items()}  # one median (interpolated) for console and JSON
    attention = count_attention_layers(ld.model)  # 0: purely convolutional, the paper's regime
    console.print(f"{name} (step {checkpoint_step(ld.checkpoint)}, {attention} attention "
                  "layers): median agreement with the network "
                  + ", ".join(f"{k} {v['median']:.3f}" for k, v in agreement.items()))
    return {
        "checkpoint": str(ld.checkpoint), "steps_trained": checkpoint_step(ld.checkpoint),
        "attention_layers": attention,
        "agreement": agreement,
        "agreement_per_seed": {k: [round(float(a), 5) for a in v] for k, v in per_seed.items()},
        "rmse_to_network": {k: _stats(v) for k, v in rmse.items()},
        **({"els_closer_than_ideal": float((rmse["els"] < rmse["ideal"]).double().mean())} if "els" in rmse else {}),
        "samples": str(save_samples(out / f"{name}-samples.npz", {"network": net, **samples})),
        "calibration": {k: c.to_dict() for k, c in cal.items()},
        "memorization": _memorization({"network": net, **samples}, train, held),
        "figures": _figures(out, name, rows, strips, strip_times, cal, n_show),
    }
