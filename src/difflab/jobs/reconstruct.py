"""`difflab reconstruct AE_RUN --images DIR` and `difflab eval AE_RUN`: how well an autoencoder gives images back.

reconstruct: the images of a folder, read and resized by the training data's loader (difflab.data.images),
encoded and decoded by the run's EMA weights; a grid of inputs above their reconstructions, and the PSNR
and SSIM of the whole folder printed.

eval: n held-out images (difflab.config.autoencoder.held_out_images: on shapes, the (shape, colour)
pairs the run did not train on, another seed), scored by difflab.metrics.reconstruction (PSNR of the
pooled MSE, SSIM, the two high-frequency energy ratios; for a VQ autoencoder the codebook usage and
perplexity over every latent position of the set) and, on shapes, by the exact readout
(difflab.data.shapes.read_attributes): the fraction of reconstructions whose shape, colour, both, and all
four attributes read the same as their input's. A table and, with --json, the report as `difflab eval`
writes one.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from difflab.config.autoencoder import held_out_images
from difflab.config.factory import build_data
from difflab.data.datasets import collate
from difflab.data.images import ImageFolder, check_image_size
from difflab.data.shapes import read_attributes
from difflab.jobs.autoencoder_runs import LoadedAutoencoder, load_autoencoder_run
from difflab.jobs.evaluate import DEFAULT_N, EvalReport, results_table
from difflab.jobs.generate import check_count, resolve_device
from difflab.jobs.train_autoencoder import comparison_grid, reconstruct
from difflab.metrics.reconstruction import ReconstructionStats, psnr, ssim
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json

READOUTS = {"shape": ("shape",), "colour": ("colour",), "shape_colour": ("shape", "colour"),
            "all": ("shape", "colour", "position", "size")}


def _check_divisible(size: int, loaded: LoadedAutoencoder, flag: str) -> None:
    f = loaded.model.factor
    if size % f:
        raise DifflabError(f"{flag} {size}: images of {size}x{size} pixels do not divide by the autoencoder's "
                           f"downsampling factor f = {f}; give a multiple of {f} (e.g. {flag} "
                           f"{max(f, size // f * f)})")


def run_reconstruct(run: str | Path, images: str | Path, out: str | Path = "reconstructions.png", *,
                    size: int | None = None, n: int = 32, ema: bool = True, device: str | None = None) -> dict:
    """Reconstruct the images of a folder; write the grid of the first n; return and print PSNR and SSIM."""
    check_count(n)
    out = Path(out)
    if out.is_dir():
        raise DifflabError(f"--out {out} is a folder; give a file name such as {out / 'reconstructions.png'}")
    device = resolve_device(device)
    loaded = load_autoencoder_run(run, ema=ema, device=device)
    channels, run_size = loaded.meta.data_shape[0], loaded.meta.data_shape[1]
    size = run_size if size is None else check_image_size(size)
    _check_divisible(size, loaded, "--size")
    folder = ImageFolder(images, size=size, mode="RGB" if channels == 3 else "L")
    if channels not in (1, 3):
        raise DifflabError(f"the autoencoder takes {channels}-channel images; reconstruct reads RGB or greyscale")
    x = collate([folder[i] for i in range(len(folder))])["x"]
    y = reconstruct(loaded.model, x).clamp(-1, 1)
    results = {"psnr": psnr(y, x), "ssim": float(ssim(y, x).mean()) if size >= 11 else float("nan"),
               "images": len(x)}
    caption = f"{Path(run).name}: inputs above reconstructions, PSNR {results['psnr']:.2f} dB over {len(x)} images"
    comparison_grid(x[:n], y[:n], out, caption=caption)
    console = Console()
    console.print(f"difflab reconstruct {run} ({loaded.checkpoint.name}, f = {loaded.model.factor}): {len(x)} images "
                  f"of {images} at {size}x{size}", markup=False, highlight=False, soft_wrap=True)
    console.print(results_table(EvalReport({}, results)))
    skipped = f" ({len(folder.skipped)} unreadable file(s) skipped)" if folder.skipped else ""
    console.print(f"wrote {out}{skipped}", markup=False, highlight=False, soft_wrap=True)
    return results


@torch.no_grad()
def score_autoencoder(loaded: LoadedAutoencoder, dataset, *, batch_size: int = 500, device: str = "cpu",
                      readout: bool = False) -> dict[str, float]:
    """Reconstruction statistics of `dataset` (difflab.metrics.reconstruction), codebook statistics for a VQ
    autoencoder, and with readout=True the readout agreement of reconstructions with their inputs."""
    model = loaded.model
    quantizer = getattr(model, "quantizer", None)
    stats = ReconstructionStats(num_codes=None if quantizer is None else quantizer.num_codes)
    agree = {name: 0 for name in READOUTS}
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        x = batch["x"]
        if quantizer is not None:
            codes = model.encode_indices(x.to(device))
            y = model.decode_indices(codes).cpu()
            stats.add_codes(codes)
        else:
            y = model.decode(model.encode(x.to(device))).cpu()
        stats.add(y, x)
        if readout:
            a, b = read_attributes(x), read_attributes(y.clamp(-1, 1))
            for name, keys in READOUTS.items():
                agree[name] += int(torch.stack([a[k] == b[k] for k in keys]).all(0).sum())
        count += len(x)
    results = stats.results()
    if readout:
        results.update({f"readout_{name}": agree[name] / count for name in READOUTS})
    return results


def evaluate_autoencoder(run: str | Path, *, n: int | None = None, seed: int = 0, batch_size: int = 500,
                         ema: bool = True, device: str | None = None, json_path: str | Path | None = None,
                         metrics: str = "auto", **diffusion_options) -> EvalReport:
    """`difflab eval AE_RUN`: reconstruction metrics on n held-out images (see the module docstring); the
    options of a diffusion run's eval (--sampler, --steps, ...) are refused by name."""
    given = [f"--{k.replace('_', '-')}" for k, v in diffusion_options.items() if v not in (None, {}, [])]
    if given or metrics != "auto":
        given = given + (["--metrics"] if metrics != "auto" else [])
        raise DifflabError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a diffusion run only; "
                           "an autoencoder run is scored by "
                           "its reconstructions (its options: --n, --seed, --batch-size, --device, --json, --no-ema)")
    n = check_count(DEFAULT_N if n is None else n)
    if batch_size < 1:
        raise DifflabError(f"--batch-size must be >= 1; got {batch_size}")
    if json_path is not None and Path(json_path).is_dir():
        raise DifflabError(f"--json {json_path} is a folder; give a file name such as {Path(json_path) / 'eval.json'}")
    device = resolve_device(device)
    loaded = load_autoencoder_run(run, ema=ema, device=device)
    data_cfg, described = held_out_images(loaded.config.data)
    if data_cfg.name == "shapes":
        data_cfg = replace(data_cfg, options={**data_cfg.options, "n": n, "seed": int(data_cfg.options["seed"]) + seed})
    dataset = build_data(data_cfg)
    if len(dataset) > n:
        dataset = torch.utils.data.Subset(dataset, range(n))
    results = score_autoencoder(loaded, dataset, batch_size=batch_size, device=device,
                                readout=data_cfg.name == "shapes")
    notes = [] if data_cfg.name == "shapes" else ["no held-out split for this data set: scored on its training images"]
    settings = {"run": str(loaded.checkpoint.parent), "checkpoint": str(loaded.checkpoint), "ema": ema,
                "autoencoder": loaded.meta.autoencoder, "factor": loaded.model.factor,
                "latent_shape": list(loaded.meta.latent_shape), "latent_scale": loaded.model.latent_scale,
                "images": described, "data": {"name": data_cfg.name, "options": data_cfg.options}, "n": len(dataset),
                "seed": seed, "batch_size": batch_size, "device": device}
    report = EvalReport(settings, results, notes)
    out = Console()
    out.print(f"difflab eval: {loaded.checkpoint} ({loaded.meta.autoencoder}, f = {loaded.model.factor}, latents "
              f"{tuple(loaded.meta.latent_shape)}): {len(dataset)} images, {described}", highlight=False, markup=False,
              soft_wrap=True)
    out.print(results_table(report))
    for note in notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    if json_path is not None:
        out.print(f"wrote {atomic_write_json(json_path, asdict(report))}", markup=False, highlight=False)
    return report
