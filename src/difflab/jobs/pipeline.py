"""Seed 004's Stable Diffusion pipeline, one step at a time, each stage written as a labelled picture.

    from difflab.jobs.pipeline import run_pipeline
    stages = run_pipeline("runs/shapes-latent", "a small red circle in the center", steps=20, guidance=3.0,
                          seed=0, out_dir="pipeline")

The stages of a text-to-image latent diffusion model (seed 004 "Stable diffusion ... multiple parts";
seed 000 "latent diffusion"; Rombach et al. 2022), the page a student reads next to the notes:

    1 tokenize         the prompt's token ids, as the text encoder's tokenizer cuts it     1_tokens.png
    2 encode           its frozen encoder's token embeddings c (L x D), a heat map          2_embedding.png
                       (seed 004 step 3 "compute prompt embeddings")
    3 draw noise       z_T ~ N(0, I) of the latent shape (c channels of h x w), seeded      3_noise.png
    4 denoise (CFG)    the sampler's estimate x0_hat(z_t) at chosen steps, decoded:         4_denoise.png
                       eps~ = eps_u + w (eps_c - eps_u) with the negative prompt (or the empty condition)
                       as eps_u (seed 004 step 4 "denoising UNet ... cross-attention with the prompt")
    5 decode           x = D(z_0 / s), the picture (seed 004 step 5 "VAE decoder")          5_image.png

plus pipeline.json (prompt, tokens, settings, files, captions). A pixel-space text run goes through the
same steps with "decode" the identity. The sampling is `jobs.generate.generate`, exactly what
`difflab sample` runs, so stage 5 is the image `difflab sample RUN --prompt ... --seed S --n 1` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from torch import Tensor

from difflab.jobs.generate import generate, resolve_device
from difflab.jobs.runs import LoadedRun, load_run
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write, atomic_write_json
from difflab.viz import save_image_grid
from difflab.viz.io import add_caption

NOISE_RANGE = 3.0  # latent pictures: grey is 0, white +3, black -3 (z_T ~ N(0, I) fits)


@dataclass
class PipelineStages:
    """What run_pipeline wrote: the files by stage, the tokens and ids, the settings."""

    files: dict[str, Path]
    tokens: list[str]
    token_ids: list[int]
    settings: dict
    captions: dict[str, str] = field(default_factory=dict)


def _save(img: Image.Image, path: Path) -> Path:
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def text_picture(lines: list[str], width: int = 480) -> Image.Image:
    """Lines of text on white (viz.io.add_caption's band above an empty strip)."""
    return add_caption(Image.new("RGB", (width, 1), "white"), "\n".join(lines))


def heat_map(values: Tensor, height_per_row: int = 12, width: int = 768) -> Image.Image:
    """A (L, D) matrix as a viridis heat map, min to max, each row height_per_row pixels high."""
    from matplotlib import colormaps

    v = values.detach().double().cpu().numpy()
    lo, hi = float(v.min()), float(v.max())
    rgb = colormaps["viridis"]((v - lo) / max(hi - lo, 1e-12))[..., :3]  # (L, D, 3) in [0, 1]
    img = Image.fromarray((rgb * 255).round().astype(np.uint8))
    return img.resize((width, height_per_row * v.shape[0]), Image.NEAREST)


def latent_channels(z: Tensor) -> Tensor:
    """(c, h, w) -> (c, 1, h, w) grey pictures of each channel on the fixed range +-NOISE_RANGE."""
    return (z.detach().float().cpu() / NOISE_RANGE).clamp(-1, 1)[:, None]


def chosen_steps(n: int, frames: int) -> list[int]:
    """`frames` step indices 0..n-1 spread evenly, first and last included."""
    m = min(frames, n)
    return sorted({round(k * (n - 1) / max(m - 1, 1)) for k in range(m)})


def _tokens(text_encoder, prompt: str) -> tuple[list[int], list[str]]:
    tokenizer = getattr(text_encoder, "tokenizer", None)
    if tokenizer is None:
        raise DifflabError("this run's text encoder exposes no tokenizer, so the tokenize stage cannot be shown")
    ids = tokenizer(prompt, truncation=True, max_length=getattr(text_encoder, "max_length", 77))["input_ids"]
    return [int(i) for i in ids], list(tokenizer.convert_ids_to_tokens(ids))


def run_pipeline(run: str | Path | LoadedRun, prompt: str, *, out_dir: str | Path, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, negative: str | None = None, frames: int = 6,
                 sampler: str | None = None, device: str | None = None, scale: int = 4,
                 log=None) -> PipelineStages:
    """Run seed 004's pipeline for `prompt` on a text-conditional run (module docstring) and write each
    stage into out_dir. steps / guidance / sampler: None = the run's sample section; frames: how many
    denoising steps stage 4 shows; scale: the enlargement of image pictures; log: where the stage lines
    go (default: printed)."""
    say = log or (lambda line: Console().print(line, markup=False, highlight=False, soft_wrap=True))
    device = resolve_device(device)
    loaded = run if isinstance(run, LoadedRun) else load_run(Path(run).expanduser(), device=device)
    if loaded.text_encoder is None:
        raise DifflabError("the pipeline is text-to-image: give a text-conditional run (e.g. one trained with "
                           "`difflab train shapes-latent`)")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DifflabError("the prompt is empty: give some text, e.g. --prompt 'a small red circle in the center'")
    if frames < 1:
        raise DifflabError(f"frames must be at least 1; got {frames}")
    s = loaded.config.sample
    steps = s.steps if steps is None else steps
    guidance = s.guidance if guidance is None else guidance
    sampler = s.sampler if sampler is None else sampler
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DifflabError(f"--out {out} is a file: give a folder for the pipeline's pictures")
    te, latent = loaded.text_encoder, loaded.autoencoder is not None
    files, captions = {}, {}

    def write(stage: str, name: str, caption: str, picture=None, images: Tensor | None = None, **grid) -> None:
        path = out / name
        if images is not None:
            save_image_grid(images, path, caption=caption, **grid)
        else:
            _save(add_caption(picture, caption), path)
        files[stage], captions[stage] = path, caption
        say(f"{stage}: {caption.splitlines()[0]} -> {path}")

    # 1 tokenize
    ids, tokens = _tokens(te, prompt)
    rows = [f"{k:>3}  {i:>6}  {t}" for k, (i, t) in enumerate(zip(ids, tokens, strict=True))]
    write("tokenize", "1_tokens.png", f"1. tokenize: {prompt!r} -> {len(ids)} token ids",
          text_picture(["  #      id  token", *rows]))
    # 2 encode the prompt
    context, mask = te.encode([prompt])
    c = context[0, mask[0]]  # (L, D): the real tokens
    write("encode", "2_embedding.png", f"2. encode the prompt: frozen text encoder -> c, {c.shape[0]} tokens x "
          f"{c.shape[1]} (rows: tokens; colour: value {float(c.min()):.2f} to {float(c.max()):.2f})", heat_map(c))
    # 3, 4: noise and denoising (generate: what `difflab sample` draws)
    seen: dict[int, tuple[float, Tensor]] = {}
    show = set(chosen_steps(steps, frames))
    result = generate(loaded.model, loaded.meta, 1, sampler=sampler, steps=steps, schedule=s.schedule, seed=seed,
                      guidance=guidance, prompts=[prompt], negative=negative, text_encoder=te, device=device,
                      return_trajectory=True, options=s.options, schedule_options=s.schedule_options,
                      callback=lambda st: seen.update({st.i: (st.t, st.x0[0])}) if st.i in show else None)
    z_T = result.sampled.trajectory[0, 0]  # (c, h, w)
    space = "latent" if latent else "pixel-space"
    write("noise", "3_noise.png", f"3. draw {space} noise z_T ~ N(0, I), seed {seed}: {z_T.shape[0]} channels of "
          f"{z_T.shape[1]}x{z_T.shape[2]} (grey 0, white +{NOISE_RANGE:g})",
          images=latent_channels(z_T), nrow=z_T.shape[0], scale=max(1, 64 // z_T.shape[-1]))
    order = sorted(seen)
    x0 = loaded.to_images(torch.stack([seen[i][1] for i in order]))
    times = ", ".join(f"{seen[i][0]:.2f}" for i in order)
    uncond = f"negative prompt {negative!r}" if negative else "the empty condition"
    write("denoise", "4_denoise.png", f"4. denoise with CFG w = {guidance:g} ({uncond} as the unconditional "
          f"branch), {sampler} {steps} steps:\n{'decoded ' if latent else ''}x0_hat at steps {[i + 1 for i in order]} "
          f"(t = {times})", images=x0, nrow=len(order), scale=scale)
    # 5 decode
    image = loaded.to_images(result.x)
    decoded = "x = D(z_0 / s)" if latent else "pixel space: x = z_0 (no decoder)"
    write("decode", "5_image.png", f"5. decode: {decoded}\n{prompt!r}", images=image, scale=scale)
    settings = {"run": str(loaded.checkpoint.parent), "checkpoint": str(loaded.checkpoint), "prompt": prompt,
                "negative": negative, "steps": steps, "guidance": guidance, "seed": seed, "sampler": sampler,
                "nfe": result.nfe, "latent_shape": list(z_T.shape), "image_shape": list(image.shape[1:])}
    atomic_write_json(out / "pipeline.json", {**settings, "token_ids": ids, "tokens": tokens,
                                              "files": {k: v.name for k, v in files.items()}, "captions": captions})
    return PipelineStages(files, tokens, ids, settings, captions)
