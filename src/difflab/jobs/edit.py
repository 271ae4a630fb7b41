"""`difflab edit / inpaint / invert / interpolate`: load a run, read the input the way its training data were
read, call difflab.editing, write pictures and arrays.

Inputs: an image file (PNG, JPEG, ...; resized, centre-cropped and converted to the run's channels by
difflab.data.images, as training images are) or a .npy array (N, *data_shape) in the data range (any
run, vector runs included). Masks: an image of the input's pixel size, white (>= 128) = regenerate, or a
.npy array of 0/1 of the data shape.

A latent run (model.autoencoder) is edited in its latent space, where its model lives: the input picture
(a .npy input and mask: of the image shape, in pixels) is encoded once by LoadedRun.to_latents (z = s E(x):
a KL autoencoder's posterior mean, a VQ one's quantized code), difflab.editing works on z unchanged, and the
result is decoded by LoadedRun.to_images, the one decode. Inpainting maps the pixel mask to the latent grid
(latent_mask) and pastes the kept pixels back (paste_known); inversion writes the latent noise and reports
the pixel PSNR beside the autoencoder's own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console
from torch import Tensor

from difflab.config.sampling import check_options, grid_options
from difflab.data.images import decode_image, to_unit_range
from difflab.editing import MixedCondition, inpaint, invert, reconstruct, sdedit, slerp_frames
from difflab.jobs.generate import (
    build_cond,
    check_count,
    clamp_to_data,
    guidance_chain,
    negative_cond,
    resolve_device,
    run_sample_keywords,
)
from difflab.jobs.runs import LoadedRun, load_run
from difflab.jobs.sample import output_file, save_array
from difflab.sampling import resolve_sampler, sample
from difflab.sampling.registry import SAMPLERS
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write
from difflab.utils.seeding import make_generator
from difflab.viz import save_image_grid
from difflab.viz.io import image_grid

IMAGE_OUT = (".png",)


# ---- inputs ------------------------------------------------------------------------------------------
def _npy(path: Path, shape: tuple[int, ...], what: str) -> Tensor:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DifflabError(f"{what} {path} is not a readable .npy array ({e})") from None
    if a.ndim == len(shape):
        a = a[None]
    if tuple(a.shape[1:]) != tuple(shape) or not np.issubdtype(a.dtype, np.number):
        raise DifflabError(f"{what} {path} has shape {tuple(a.shape)}; this run takes (N, {', '.join(map(str, shape))})")
    return torch.from_numpy(a.astype(np.float32))


def _source(path, flag: str, shape) -> tuple[Path, Tensor | None]:
    """(path, its array when it is a .npy file, else None); one message for a missing file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DifflabError(f"{flag} {path} does not exist")
    return path, (_npy(path, shape, flag) if path.suffix.lower() == ".npy" else None)


def read_input(path, loaded: LoadedRun) -> tuple[Tensor, tuple[int, int] | None]:
    """(x (N, *data_shape) in the data range, the image file's pixel size or None for .npy); a latent run's
    input is a picture of its image shape (LoadedRun.to_latents encodes it)."""
    shape = loaded.image_shape
    path, array = _source(path, "--image", shape)
    if array is not None:
        return clamp_to_data(array, loaded.meta), None
    if len(shape) != 3:
        raise DifflabError(f"this run's data are vectors of shape {shape}, not images: give --image X.npy of shape (N, {shape[0]})")
    if shape[0] not in (1, 3) or shape[1] != shape[2]:
        raise DifflabError(f"this run's images have shape {shape}; only 1- or 3-channel square images can be read "
                           "from a picture file: give a .npy array")
    try:
        with Image.open(path) as img:
            size = img.size
        u8 = decode_image(path, shape[-1], "L" if shape[0] == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DifflabError(f"--image {path} is not a readable image ({e})") from None
    return to_unit_range(u8)[None], size


def read_mask(path, loaded: LoadedRun, image_size: tuple[int, int] | None) -> Tensor:
    """The regeneration mask (1, *image_shape) of {0, 1}: white = regenerate (a latent run's too is in pixels:
    latent_mask takes it to the latent grid)."""
    shape = loaded.image_shape
    path, m = _source(path, "--mask", shape)
    if m is not None:
        if not bool(((m == 0) | (m == 1)).all()):
            raise DifflabError(f"--mask {path} must hold only 0 (keep) and 1 (regenerate)")
        return m[:1]
    if len(shape) != 3:
        raise DifflabError("a vector run takes its mask as .npy of 0/1 of the data shape")
    try:
        with Image.open(path) as img:
            if image_size is not None and img.size != image_size:
                raise DifflabError(f"--mask {path} is {img.size[0]}x{img.size[1]} pixels but the image is "
                                   f"{image_size[0]}x{image_size[1]}: draw the mask on the image's own canvas")
            grey = ImageOps.fit(ImageOps.exif_transpose(img).convert("L"), (shape[-1], shape[-1]),
                                method=Image.Resampling.NEAREST)
    except (UnidentifiedImageError, OSError) as e:
        raise DifflabError(f"--mask {path} is not a readable image ({e})") from None
    m = torch.from_numpy((np.asarray(grey) >= 128).astype(np.float32))
    return m[None, None].expand(1, shape[0], *m.shape).clone()


# ---- settings shared by the commands ---------------------------------------------------------------------
def _setup(run, device, ema):
    device = resolve_device(device)
    return load_run(Path(run).expanduser(), ema=ema, device=device), device


# ---- a latent run's mask and kept pixels ------------------------------------------------------------------
def latent_mask(mask: Tensor, latent_shape) -> Tensor:
    """The pixel mask (B, C, H, W) of {0, 1} on the latent grid (B, c, H/f, W/f): a latent cell is regenerated
    when any pixel of its f x f block, in any channel, is, i.e. the channel maximum max-pooled over the
    blocks (f = H / h). Max rather than mean or nearest: every regenerated pixel then lies in a regenerated
    cell (the regenerated region covers the mask), and a cell that keeps its encoded latent holds only kept
    pixels, so the latent is never asked to keep what the user asked to replace. The cells along the
    boundary regenerate some kept pixels too; paste_known restores those."""
    c, h, w = latent_shape
    H, W = mask.shape[-2:]
    f = H // h
    if f < 1 or H != f * h or W != f * w:
        raise DifflabError(f"a {H}x{W} mask does not fit this run's {h}x{w} latent grid: give a mask of the image's size")
    cells = F.max_pool2d(mask.amax(dim=1, keepdim=True), kernel_size=f, stride=f)
    return cells.expand(mask.shape[0], c, h, w).contiguous()


def paste_known(decoded: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """x = m decoded + (1 - m) image at pixel resolution: the kept pixels are the input's exactly (run_inpaint's
    docstring: why this is the default, and when --no-paste is right)."""
    return mask * decoded + (1 - mask) * image


def _sampler(loaded: LoadedRun, sampler, steps, schedule, options, schedule_options):
    s = loaded.config.sample
    steps = s.steps if steps is None else steps
    name = resolve_sampler(s.sampler if sampler is None else sampler, loaded.model.process, steps)
    keywords, grid_keywords = run_sample_keywords(s, sampler, schedule, options, schedule_options)
    kwargs = check_options(SAMPLERS[name], keywords, f"sampler {name!r} (--option)")
    schedule = s.schedule if schedule is None else schedule
    grid = grid_options(loaded.model.process, name, schedule, grid_keywords, steps=steps)
    return name, steps, schedule, grid, kwargs


def _condition(loaded: LoadedRun, n, labels, prompt, negative, guidance, device):
    """(cond, guidance function) for n samples, as `difflab sample` builds them."""
    s = loaded.config.sample
    w = s.guidance if guidance is None else guidance
    if not isinstance(w, (int, float)) or not math.isfinite(w):
        raise DifflabError(f"the guidance weight must be a finite number (1 = none); got {w!r}")
    cond = build_cond(loaded.model, loaded.meta, n, labels, [prompt] if prompt is not None else None,
                      loaded.text_encoder, device)
    if w != 1.0 and cond is None:
        raise DifflabError("classifier-free guidance needs a conditional model (class or text); use --guidance 1")
    if negative is not None and w == 1.0:
        raise DifflabError("a negative prompt needs a guidance weight != 1 (e.g. --guidance 3)")
    uncond = negative_cond(negative, n, loaded.text_encoder, device) if w != 1.0 else None
    return cond, guidance_chain(w, uncond)


def _scale(shape) -> int:
    return max(1, 128 // shape[-1])


def _say(text: str) -> None:
    Console().print(text, markup=False, highlight=False, soft_wrap=True)


def _repeat(x: Tensor, n: int) -> Tensor:
    return x if x.shape[0] == n else x[:1].expand(n, *x.shape[1:]).contiguous()


def _write_pictures(rows: Tensor, out: Path, loaded: LoadedRun, nrow: int) -> Path:
    if len(loaded.meta.data_shape) != 3:
        raise DifflabError("this run's data are vectors: write the result with --save-array X.npy")
    return save_image_grid(rows, out, nrow=nrow, scale=_scale(rows.shape[1:]))


# ---- the jobs ------------------------------------------------------------------------------------------
@torch.no_grad()
def run_edit(run, *, image, out=None, strength: float = 0.5, n: int = 8, sampler=None, steps=None, schedule=None,
             seed: int = 0, labels=None, prompt=None, negative=None, guidance=None, save_array_path=None,
             device=None, ema: bool = True, options=None, schedule_options=None):
    """SDEdit: n edits of the input at `strength`; the grid shows the input first, then the edits."""
    n = check_count(n)
    loaded, device = _setup(run, device, ema)
    out = None if out is None else output_file(out, "--out", IMAGE_OUT)
    x_in, _ = read_input(image, loaded)
    x_in = _repeat(x_in.to(device), n) if x_in.shape[0] == 1 else x_in.to(device)
    name, steps, schedule, grid, kwargs = _sampler(loaded, sampler, steps, schedule, options, schedule_options)
    cond, guide = _condition(loaded, x_in.shape[0], labels, prompt, negative, guidance, device)
    result = sdedit(loaded.model, loaded.to_latents(x_in), strength, sampler=name, steps=steps, schedule=schedule,
                    schedule_options=grid, seed=seed, cond=cond, guidance=guide, **kwargs)
    x = loaded.to_images(clamp_to_data(result.x, loaded.meta))  # a latent run's edits decoded
    written = _outputs(x, x_in[:1], out, save_array_path, loaded)
    _say(f"wrote {', '.join(written)} ({x.shape[0]} edits at strength {strength}, {result.nfe} denoiser evaluations)")
    return x


@torch.no_grad()
def run_inpaint(run, *, image, mask, out=None, method: str = "replace", jump_length: int = 5, resample: int = 5,
                n: int = 8, sampler=None, steps=None, schedule=None, seed: int = 0, labels=None, prompt=None,
                negative=None, guidance=None, save_array_path=None, device=None, ema: bool = True, options=None,
                schedule_options=None, paste: bool = True):
    """n completions of the masked region; the grid shows the input, the kept part, then the completions.

    A latent run: inpaint_loaded (encode once, the mask max-pooled to the latent grid, the library's
    inpainting on the latents, decode) and then, with paste (the default), the kept pixels pasted back from
    the input, x = m D(z) + (1 - m) x_in: without it the kept region would be the autoencoder's
    reconstruction of the user's pixels, not the pixels (Rombach et al. 2022 and diffusers'
    StableDiffusionInpaintPipeline keep the decoded result; diffusers pastes only with padding_mask_crop).
    paste=False (--no-paste) keeps the decoded picture whole, which is the better choice when the
    autoencoder's reconstruction differs visibly from the input (a weak or mismatched autoencoder): the
    decoded picture is consistent across the mask's edge, the pasted one can show a seam there."""
    n = check_count(n)
    loaded, device = _setup(run, device, ema)
    out = None if out is None else output_file(out, "--out", IMAGE_OUT)
    x_in, size = read_input(image, loaded)
    m = read_mask(mask, loaded, size).to(device)
    x_in = _repeat(x_in.to(device), n) if x_in.shape[0] == 1 else x_in.to(device)
    name, steps, schedule, grid, kwargs = _sampler(loaded, sampler, steps, schedule, options, schedule_options)
    cond, guide = _condition(loaded, x_in.shape[0], labels, prompt, negative, guidance, device)
    x, nfe = inpaint_loaded(loaded, x_in, m, paste=paste, method=method, jump_length=jump_length, resample=resample,
                            sampler=name, steps=steps, schedule=schedule, schedule_options=grid, seed=seed, cond=cond,
                            guidance=guide, **kwargs)
    kept = x_in[:1] * (1 - m)  # the regenerated region shown as 0 (mid grey)
    written = _outputs(x, torch.cat([x_in[:1], kept]), out, save_array_path, loaded)
    _say(f"wrote {', '.join(written)} ({x.shape[0]} completions by {method}, {nfe} denoiser evaluations)")
    return x


def inpaint_loaded(loaded: LoadedRun, x_in: Tensor, m: Tensor, *, paste: bool = True, **inpaint_options):
    """(completions in the data range, denoiser evaluations) of x_in (B, *image_shape) where the pixel mask m
    is 1, by difflab.editing.inpaint: in pixel space directly; a latent run's image encoded once
    (LoadedRun.to_latents, rows that repeat one input encoded once), the known latents re-noised by the
    library at every step inside latent_mask(m), the result decoded and, with paste, the kept pixels pasted
    back (paste_known)."""
    if loaded.autoencoder is None:
        result = inpaint(loaded.model, x_in, m, **inpaint_options)
        return clamp_to_data(result.x, loaded.meta), result.nfe
    same = x_in.shape[0] > 1 and bool((x_in == x_in[:1]).all())
    z_in = loaded.to_latents(x_in[:1] if same else x_in)
    z_in = _repeat(z_in, x_in.shape[0])
    result = inpaint(loaded.model, z_in, latent_mask(m, z_in.shape[1:]), **inpaint_options)
    x = loaded.to_images(clamp_to_data(result.x, loaded.meta))
    return (paste_known(x, x_in, m.to(x.dtype)) if paste else x), result.nfe


def _outputs(x: Tensor, head: Tensor, out, save_array_path, loaded) -> list[str]:
    written = []
    if out is None and save_array_path is None:
        raise DifflabError("nothing to write: give --out X.png and/or --save-array X.npy")
    if out is not None:
        written.append(str(_write_pictures(torch.cat([head.to(x.dtype), x]), out, loaded, nrow=head.shape[0] + x.shape[0])))
    if save_array_path is not None:
        written.append(str(save_array(x, output_file(save_array_path, "--save-array", (".npy",)))))
    return written


def psnr(x: Tensor, y: Tensor, peak: float = 2.0) -> float:
    """Peak signal-to-noise ratio 10 log10(peak^2 / MSE) in dB; peak 2 = the [-1, 1] image range."""
    mse = float((x.double() - y.double()).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


class Inversion(NamedTuple):
    """What run_invert returns. noise: x_T (a latent run's: of the latent shape); reconstruction: x_T
    sampled back down the grid, as pictures (decoded), or None; psnr: its PSNR against the input in the
    picture's units (pixels), or None; autoencoder_psnr: a latent run's PSNR of decode(encode(x)) against x,
    the part of the error that is the autoencoder's, or None; latent_rms: the RMS error of the round trip
    z -> x_T -> z in what the model denoises (the inversion's own error), or None."""

    noise: Tensor
    reconstruction: Tensor | None
    psnr: float | None
    autoencoder_psnr: float | None = None
    latent_rms: float | None = None


def _rms(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).square().mean().sqrt())


@torch.no_grad()
def run_invert(run, *, image, out, reconstruct_too: bool = False, sampler: str = "ddim", steps=None, schedule=None,
               labels=None, prompt=None, guidance=None, device=None, ema: bool = True, schedule_options=None):
    """Write the noise x_T of the input (.npy; a latent run's: the probability-flow inversion of its encoded
    latents, of the latent shape); with reconstruct_too also its reconstruction (OUT.reconstruction.png
    beside the array, decoded) and the PSNR in pixels against the input, a latent run's beside the
    autoencoder's own decode(encode(x)) PSNR. Returns an Inversion."""
    loaded, device = _setup(run, device, ema)
    out = output_file(out, "--out", (".npy",))
    x_in, _ = read_input(image, loaded)
    x_in = x_in.to(device)
    z_in = loaded.to_latents(x_in)
    name, steps, schedule, grid, _ = _sampler(loaded, sampler, steps, schedule, None, schedule_options)
    cond, guide = _condition(loaded, x_in.shape[0], labels, prompt, None, guidance, device)
    inv = invert(loaded.model, z_in, sampler=name, steps=steps, schedule=schedule, schedule_options=grid, cond=cond,
                 guidance=guide)
    written = [str(save_array(inv.x, out))]
    report = Inversion(inv.x, None, None)
    if reconstruct_too:
        z_rec = clamp_to_data(reconstruct(loaded.model, inv.x, inv.times, sampler=name, cond=cond, guidance=guide).x,
                              loaded.meta)
        rec = loaded.to_images(z_rec)
        ae = None if loaded.autoencoder is None else psnr(loaded.to_images(z_in), x_in)
        report = Inversion(inv.x, rec, psnr(rec, x_in), ae, _rms(z_rec, z_in))
        if len(loaded.image_shape) == 3:
            pic = out.with_suffix(".reconstruction.png")
            written.append(str(_write_pictures(torch.cat([x_in, rec]), pic, loaded, nrow=x_in.shape[0])))
        else:
            written.append(str(save_array(rec, out.with_suffix(".reconstruction.npy"))))
    _say(f"wrote {', '.join(written)} ({steps} {name} steps, {inv.nfe} denoiser evaluations{_quality(report)})")
    return report


def _quality(r: Inversion) -> str:
    if r.psnr is None:
        return ""
    if r.autoencoder_psnr is None:
        return f", reconstruction PSNR {r.psnr:.2f} dB"
    return (f", reconstruction PSNR {r.psnr:.2f} dB in pixels; the autoencoder alone, decode(encode(x)): "
            f"{r.autoencoder_psnr:.2f} dB, the ceiling of a latent round trip; the inversion's own error, the "
            f"latent round-trip RMS: {r.latent_rms:.3g}")


@torch.no_grad()
def run_interpolate(run, *, out, seeds=None, images=None, frames: int = 8, labels=None, prompts=None, sampler=None,
                    steps=None, schedule=None, guidance=None, device=None, ema: bool = True, options=None,
                    schedule_options=None):
    """A strip (PNG) or animation (GIF) of `frames` samples whose noises slerp from seed A's to seed B's (or
    from the inverted noise of image A to that of image B: deterministic sampler, the inversion's grid, each
    image inverted under the condition and guidance its end frame is sampled with, so the end frames are the
    images' reconstructions); two classes or two prompts also move the condition from the first to the second
    (MixedCondition). A latent run's images are encoded first, their latent noises slerped, the frames
    decoded."""
    if (seeds is None) == (images is None):
        raise DifflabError("give --seeds A B or --images A B (the ends of the path), not both")
    ends = list(seeds if images is None else images)
    if len(ends) != 2 or (images is None and not all(isinstance(s, int) for s in ends)):
        raise DifflabError(f"--seeds / --images take two values A B; got {ends}")
    loaded, device = _setup(run, device, ema)
    out = output_file(out, "--out", (".png", ".gif"))
    shape = loaded.meta.data_shape
    if len(shape) != 3:
        raise DifflabError("interpolation strips are pictures: this run's data are vectors")
    name, steps, schedule, grid, kwargs = _sampler(loaded, sampler, steps, schedule, options, schedule_options)
    model = loaded.model
    two = (labels is not None and len(labels) == 2) or (prompts is not None and len(prompts) == 2)
    if two:
        if guidance not in (None, 1.0):
            raise DifflabError("interpolating between two conditions takes no guidance weight: drop --guidance")
        pairs = [(labels[i:i + 1] if labels else None, [prompts[i]] if prompts else None) for i in range(2)]
        conds = [build_cond(model, loaded.meta, frames, lab, pr, loaded.text_encoder, device) for lab, pr in pairs]
        end_conds = [build_cond(model, loaded.meta, 1, lab, pr, loaded.text_encoder, device) for lab, pr in pairs]
        model = MixedCondition(model, conds[0], conds[1], torch.linspace(0, 1, frames, dtype=torch.float64))
        cond, guide, end_guide = None, None, None
    else:
        prompt = prompts[0] if prompts else None
        cond, guide = _condition(loaded, frames, labels, prompt, None, guidance, device)
        end_cond, end_guide = _condition(loaded, 1, labels, prompt, None, guidance, device)
        end_conds = [end_cond, end_cond]
    if images is None:
        std = loaded.model.process.prior_std()
        z = [torch.randn(shape, generator=make_generator(s, device), device=device) * std for s in ends]
    else:
        if name not in ("ddim", "euler", "heun"):
            name, kwargs = "ddim", {}
        # each end inverted under the condition and guidance its frame is sampled with, so the ends come back
        inverted = [invert(loaded.model, loaded.to_latents(read_input(p, loaded)[0][:1].to(device)), sampler=name,
                           steps=steps, schedule=schedule, schedule_options=grid, cond=c, guidance=end_guide)
                    for p, c in zip(ends, end_conds, strict=True)]  # a latent run's images encoded
        z, schedule, grid = [inv.x for inv in inverted], inverted[0].times, None
    x_T = slerp_frames(z[0], z[1], frames).reshape(frames, *shape)
    result = sample(model, x_T, sampler=name, steps=steps, schedule=schedule, schedule_options=grid, cond=cond,
                    guidance=guide, **kwargs)
    x = loaded.to_images(clamp_to_data(result.x, loaded.meta))  # a latent run's frames decoded
    if out.suffix.lower() == ".gif":
        _write_gif(x, out, _scale(x.shape[1:]))
    else:
        save_image_grid(x, out, nrow=frames, scale=_scale(x.shape[1:]))
    what = "seed" if images is None else "the noise of"
    _say(f"wrote {out} ({frames} frames from {what} {ends[0]} to {what} {ends[1]}, {result.nfe} denoiser evaluations)")
    return x


def _write_gif(x: Tensor, path: Path, scale: int) -> Path:
    """Frames there and back (a seamless loop), 8 per second."""
    frames = [image_grid(x[i:i + 1], nrow=1, pad=0) for i in range(x.shape[0])]
    pics = [Image.fromarray(f[:, :, 0] if f.shape[-1] == 1 else f).resize(
        (f.shape[1] * scale, f.shape[0] * scale), Image.Resampling.NEAREST) for f in frames]
    loop = pics + pics[-2:0:-1]
    return atomic_write(path, lambda tmp: loop[0].save(tmp, format="GIF", save_all=True, append_images=loop[1:],
                                                       duration=125, loop=0))
