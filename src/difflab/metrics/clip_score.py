"""CLIP score (Hessel et al. 2021; seed 000 "CLIP Score"): text-image alignment of generated samples.

CLIPScore = max(100 * mean_i cos(E_image(x_i), E_text(c_i)), 0), computed by torchmetrics' CLIPScore
with a CLIP model loaded OFFLINE by transformers from a local folder or the local Hugging Face cache
(nothing is downloaded at run time). Without such a model a DifflabError says how to get one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from difflab.metrics.features import images_to_uint8
from difflab.utils.errors import DifflabError

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch16"


class _ProjectedCLIP(nn.Module):
    """A CLIPModel whose get_*_features return the projected embedding tensor.

    transformers >= 5 returns a BaseModelOutputWithPooling (embedding in .pooler_output) where
    torchmetrics' CLIPScore expects the tensor itself; this adapter gives it the tensor.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _embedding(out) -> Tensor:
        return out if isinstance(out, Tensor) else out.pooler_output

    def get_image_features(self, *args, **kwargs) -> Tensor:
        return self._embedding(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> Tensor:
        return self._embedding(self.model.get_text_features(*args, **kwargs))


def load_clip(model: str | Path = DEFAULT_CLIP_MODEL) -> tuple[nn.Module, object]:
    """(model, processor) of a CLIP checkpoint from a local folder or hub id already in the local cache.

    Loaded with local_files_only=True: never downloads.
    """
    try:
        from transformers import CLIPModel, CLIPProcessor
    except ImportError as e:
        raise DifflabError(f"the CLIP score needs transformers ({e}); install `difflab[text]`") from e
    try:
        clip = CLIPModel.from_pretrained(str(model), local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(str(model), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DifflabError(
            f"no CLIP model {str(model)!r} is available offline ({type(e).__name__}). Put one on disk first, "
            f"e.g. on a machine with internet: `hf download {DEFAULT_CLIP_MODEL} --local-dir clip` (or "
            "CLIPModel/CLIPProcessor.from_pretrained(...).save_pretrained('clip')), copy the folder here and pass "
            "its path; a hub id works only if it is already in the local Hugging Face cache."
        ) from e
    return _ProjectedCLIP(clip), processor


class ClipScorer:
    """Streaming CLIP score: update(images in [-1, 1], captions) per batch, then compute()."""

    def __init__(self, model: str | Path | Callable[[], tuple[nn.Module, object]] = DEFAULT_CLIP_MODEL):
        from torchmetrics.multimodal.clip_score import CLIPScore

        loader = model if callable(model) else (lambda: load_clip(model))
        self.metric = CLIPScore(model_name_or_path=loader)

    @torch.inference_mode()
    def update(self, images: Tensor, captions: Sequence[str]) -> ClipScorer:
        if len(captions) != images.shape[0]:
            raise DifflabError(f"need one caption per image: {images.shape[0]} images, {len(captions)} captions")
        if not all(isinstance(c, str) for c in captions):
            raise DifflabError("captions must be strings")
        self.metric.update(images_to_uint8(images), list(captions))
        return self

    def compute(self) -> float:
        if int(self.metric.n_samples) == 0:
            raise DifflabError("the CLIP score needs at least one image-caption pair")
        return float(self.metric.compute())


def clip_score(
    images: Tensor,
    captions: Sequence[str],
    model: str | Path | Callable[[], tuple[nn.Module, object]] = DEFAULT_CLIP_MODEL,
    *,
    batch_size: int = 64,
) -> float:
    """CLIP score of images (N, C, H, W) in [-1, 1] against their captions (N strings).

    `model`: a local folder, a hub id present in the local cache, or a callable returning
    (model, processor) as torchmetrics accepts.
    """
    if len(captions) != images.shape[0]:
        raise DifflabError(f"need one caption per image: {images.shape[0]} images, {len(captions)} captions")
    scorer = ClipScorer(model)
    for start in range(0, images.shape[0], batch_size):
        scorer.update(images[start : start + batch_size], captions[start : start + batch_size])
    return scorer.compute()
