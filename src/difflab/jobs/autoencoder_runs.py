"""An autoencoder run folder, written by `difflab train-autoencoder` and read by reconstruct, eval and
latent diffusion; and `load_autoencoder`, the one way to get an autoencoder from a path or hub id.

    RUN/run.json                  {"kind": "autoencoder", "autoencoder": "kl" | "vq", "data_shape": [C, H, W],
                                   "latent_shape": [c, H/f, W/f], "factor": f, "value_range": [-1, 1]}
    RUN/ckpt-<step>/...           checkpoints (difflab.train.checkpoint); config.yaml holds an
                                  AutoencoderRunConfig (difflab.config.autoencoder) with its latent_scale
    RUN/reconstructions/step-*.png, RUN/reconstructions.png   previews: inputs above, reconstructions below
    RUN/log.jsonl, loss.png       the training log and its curve

The fingerprint of a loaded autoencoder is the SHA-256 over the checkpoint manifest's hashes of the weight
file it was loaded from and of config.yaml: the same weights give the same fingerprint, so latent caches
(difflab.autoencoders.latent_cache) key on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from difflab.autoencoders import Autoencoder
from difflab.config.autoencoder import AutoencoderRunConfig, autoencoder_config_from_dict, build_autoencoder
from difflab.jobs.runs import is_diffusers_source
from difflab.train.checkpoint import MANIFEST, load_weights, newest_intact_checkpoint, read_config
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json

KIND = "autoencoder"
TRAIN_HINT = "train one with `difflab train-autoencoder shapes-kl --out RUN`"


@dataclass
class AutoencoderMeta:
    """What RUN/run.json says of an autoencoder run."""

    autoencoder: str  # kl | vq
    data_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int]
    factor: int
    value_range: tuple[float, float] = (-1.0, 1.0)


def write_autoencoder_meta(run_dir: Path, meta: AutoencoderMeta) -> None:
    atomic_write_json(run_dir / "run.json", {
        "kind": KIND, "autoencoder": meta.autoencoder, "data_shape": list(meta.data_shape),
        "latent_shape": list(meta.latent_shape), "factor": meta.factor, "value_range": list(meta.value_range)})


def _run_json(run_dir: Path) -> dict | None:
    """run.json as a dict, None when absent; a damaged file is one DifflabError naming it."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DifflabError(f"{path} is damaged ({type(e).__name__}: {e}); `difflab train-autoencoder --out "
                           f"{run_dir} --resume --steps 1` writes it again") from None
    if not isinstance(data, dict):
        raise DifflabError(f"{path} is damaged (not a JSON mapping); `difflab train-autoencoder --out {run_dir} "
                           "--resume --steps 1` writes it again")
    return data


def is_autoencoder_run(path: str | Path) -> bool:
    """A folder whose run.json says "kind": "autoencoder" (a damaged run.json is not one)."""
    path = Path(path).expanduser()
    try:
        data = _run_json(path) if path.is_dir() else None
    except DifflabError:
        return False
    return data is not None and data.get("kind") == KIND


def read_autoencoder_meta(run_dir: Path) -> AutoencoderMeta:
    """RUN/run.json of an autoencoder run; a missing folder, a diffusion run or a damaged file is one
    DifflabError naming the fix."""
    if not run_dir.is_dir():
        raise DifflabError(f"autoencoder run folder {run_dir} does not exist; {TRAIN_HINT.replace('RUN', str(run_dir))}")
    data = _run_json(run_dir)
    if data is None:
        raise DifflabError(f"{run_dir} is not a difflab run (no run.json); {TRAIN_HINT.replace('RUN', str(run_dir))}")
    if data.get("kind") != KIND:
        raise DifflabError(f"{run_dir} is a diffusion run, not an autoencoder run: give the folder "
                           "`difflab train-autoencoder` wrote (its run.json says \"kind\": \"autoencoder\"), or "
                           f"{TRAIN_HINT}")
    try:
        return AutoencoderMeta(str(data["autoencoder"]), tuple(int(n) for n in data["data_shape"]),
                               tuple(int(n) for n in data["latent_shape"]), int(data["factor"]),
                               tuple(float(v) for v in data.get("value_range", (-1.0, 1.0))))
    except (KeyError, TypeError, ValueError) as e:
        raise DifflabError(f"{run_dir / 'run.json'} is damaged ({type(e).__name__}: {e}); `difflab train-autoencoder "
                           f"--out {run_dir} --resume --steps 1` writes it again") from None


@dataclass
class LoadedAutoencoder:
    config: AutoencoderRunConfig
    meta: AutoencoderMeta
    model: Autoencoder
    checkpoint: Path


def weights_fingerprint(ckpt: Path, weights: str) -> str:
    """SHA-256 over the manifest's hashes of `weights` and config.yaml (the files that make the model)."""
    files = json.loads((ckpt / MANIFEST).read_text())["files"]
    text = "\n".join(f"{name}:{files[name]['sha256']}" for name in (weights, "config.yaml"))
    return hashlib.sha256(text.encode()).hexdigest()


def intact_checkpoint(run_dir: Path, weights: str) -> Path:
    """The newest checkpoint whose weights, state and config are sound; damaged newer ones are skipped with a
    note on stderr; none intact (or none at all) is one DifflabError naming the fix."""
    ckpt, skipped = newest_intact_checkpoint(run_dir, (weights, "state.json", "config.yaml"))
    if ckpt is None and skipped:
        raise DifflabError(f"{skipped[0]}; no checkpoint of {run_dir} is intact: remove the damaged ckpt-* folders "
                           f"and resume with `difflab train-autoencoder --out {run_dir} --resume`, or train it again")
    if ckpt is None:
        raise DifflabError(f"{run_dir} has no complete checkpoint yet; train it longer (`difflab train-autoencoder "
                           f"--out {run_dir} --resume`)")
    for damage in skipped:
        Console(stderr=True).print(f"note: skipped {damage.file.parent.name}: {damage}; using {ckpt.name}",
                                   markup=False, highlight=False, soft_wrap=True)
    return ckpt


def load_autoencoder_run(run: str | Path, ema: bool = True, device: str = "cpu") -> LoadedAutoencoder:
    """The autoencoder of a run folder from its newest intact checkpoint (EMA weights by default), in eval
    mode with frozen parameters, its fingerprint set."""
    run_dir = Path(run).expanduser()
    meta = read_autoencoder_meta(run_dir)
    weights = "ema.safetensors" if ema else "model.safetensors"
    ckpt = intact_checkpoint(run_dir, weights)
    cfg = autoencoder_config_from_dict(read_config(ckpt))
    model = build_autoencoder(cfg, meta.data_shape)
    load_weights(ckpt, model, ema=ema)
    model.fingerprint = weights_fingerprint(ckpt, weights) if (ckpt / MANIFEST).is_file() else ""
    model.to(device).eval().requires_grad_(False)
    return LoadedAutoencoder(cfg, meta, model, ckpt)


def load_autoencoder(source: str | Path, device: str = "cpu") -> Autoencoder:
    """An autoencoder from an autoencoder run folder, or a diffusers AutoencoderKL folder / cached hub id
    (difflab.interop.autoencoder, offline). Missing, damaged or wrong-kind sources: one DifflabError each."""
    path = Path(source).expanduser()
    if is_autoencoder_run(path) or (path / "run.json").is_file():
        return load_autoencoder_run(path, device=device).model
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "vae").is_dir() \
            and not (path / "model_index.json").is_file():
        raise DifflabError(f"{path} is neither an autoencoder run (no run.json) nor a diffusers AutoencoderKL folder "
                           f"(no config.json): {TRAIN_HINT.replace('RUN', str(path))}")
    if not path.exists() and not is_diffusers_source(source):
        raise DifflabError(f"autoencoder {source} does not exist: give an autoencoder run folder "
                           f"({TRAIN_HINT}), a diffusers AutoencoderKL folder, or a cached hub id 'owner/name'")
    from difflab.interop.autoencoder import load_diffusers_autoencoder

    return load_diffusers_autoencoder(source, device)
