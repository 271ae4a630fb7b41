"""Load a diffusers model folder or hub id as a difflab denoiser, offline: never downloads.

    from difflab.interop import load_diffusers
    D = load_diffusers("path/or/hub-id")                           # model + scheduler config
    x = difflab.sample(D, (4, *D.sample_shape), sampler="dpmpp_2m", steps=20, schedule=D.default_grid(20))

Accepted layouts: a pipeline folder (model_index.json, with unet/ or transformer/ and scheduler/), or a
model folder (config.json) with its scheduler_config.json beside it (or in scheduler/, or ../scheduler/).
A pipeline folder's own tokenizer/ and text_encoder/ become `denoiser.text_encoder` (interop.text), and
the empty prompt its null condition. A hub id is looked up in the standard Hugging Face cache only
(local_files_only). Weights load from
safetensors only (use_safetensors=True): no pickle is ever read.
"""

from __future__ import annotations

import json
from pathlib import Path

from difflab.interop.denoiser import DiffusersDenoiser
from difflab.interop.schedule import schedule_from_config
from difflab.interop.text import PipelineTextEncoder
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError

MODEL_FOLDERS = ("unet", "transformer")
SCHEDULER_NAME = "scheduler_config.json"


def _resolve(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    if str(source).count("/") != 1:
        raise DifflabError(f"no diffusers model folder at {str(source)!r}: give a folder or a hub id 'owner/name'")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as err:  # pragma: no cover - huggingface_hub comes with diffusers
        raise DifflabError("loading a hub id needs huggingface_hub: pip install 'difflab[diffusers]'") from err
    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except LocalEntryNotFoundError as err:
        raise DifflabError(
            f"{source!r} is not in the Hugging Face cache and difflab never downloads: run "
            f"`huggingface-cli download {source}` once online, or pass the model's local folder"
        ) from err


def _model_and_scheduler(root: Path) -> tuple[Path, Path]:
    if (root / "model_index.json").exists():
        model = next((root / d for d in MODEL_FOLDERS if (root / d / "config.json").exists()), None)
        if model is None:
            raise DifflabError(f"the pipeline folder {root} has no unet/ or transformer/ with a config.json")
    elif (root / "config.json").exists():
        model = root
    else:
        raise DifflabError(f"{root} is not a diffusers folder: it has neither model_index.json nor config.json")
    for cand in (model / SCHEDULER_NAME, model / "scheduler" / SCHEDULER_NAME, model.parent / "scheduler" / SCHEDULER_NAME):
        if cand.exists():
            return model, cand
    raise DifflabError(
        f"no scheduler config for {model}: save the scheduler beside the model "
        f"(scheduler.save_pretrained(folder) writes {SCHEDULER_NAME}), or use the pipeline folder"
    )


def load_diffusers(
    source: str | Path, *, shift: float | None = None, null_cond: Cond | None = None, device: str = "cpu",
    dtype=None,
) -> DiffusersDenoiser:
    """The diffusers model at `source` (folder or cached hub id) as a DiffusersDenoiser (module doc).

    shift overrides a flow config's shift (needed where it is resolution dependent); null_cond is the
    condition used for guidance's unconditional rows (denoiser.py).
    """
    try:
        import diffusers
    except ImportError as err:
        raise DifflabError("diffusers models need the diffusers extra: pip install 'difflab[diffusers]'") from err
    root = _resolve(source)
    model_dir, scheduler_file = _model_and_scheduler(root)
    config = json.loads((model_dir / "config.json").read_text())
    name = config.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise DifflabError(f"{model_dir / 'config.json'} names the model class {name!r}, which diffusers lacks")
    try:
        model = cls.from_pretrained(model_dir, use_safetensors=True, local_files_only=True)
    except OSError as err:
        raise DifflabError(f"cannot load {model_dir}: {err} (difflab reads safetensors weights only)") from err
    model = (model.to(device) if dtype is None else model.to(device=device, dtype=dtype)).eval().requires_grad_(False)
    schedule = schedule_from_config(json.loads(scheduler_file.read_text()), shift=shift)
    denoiser = DiffusersDenoiser(model, schedule, null_cond=null_cond)
    denoiser.text_encoder = None
    if PipelineTextEncoder.present(model_dir.parent) and model_dir != root:
        denoiser.text_encoder = PipelineTextEncoder(root, device=device)
        if null_cond is None:
            denoiser.null_cond = {"context": denoiser.text_encoder.null()}
    size = config.get("sample_size")
    channels = config.get("in_channels")
    if isinstance(size, int) and isinstance(channels, int):
        denoiser.sample_shape = (channels, size, size)
    return denoiser
