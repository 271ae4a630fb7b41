"""The standard FID Inception-v3 (torch-fidelity's FeatureExtractorInceptionV3) and its weights.

FID, KID and IS are computed by torchmetrics (FrechetInceptionDistance, KernelInceptionDistance,
InceptionScore; see difflab.metrics.evaluate); this module provides the network they use by default:
the TF-ported Inception-v3 of Heusel et al. 2017 (seed 000 "FID", seed 001 "FID, IS") as shipped by
torch-fidelity, which torchmetrics wraps. Images in [-1, 1] are quantized to uint8 exactly as generated
images are saved (EDM: x * 127.5 + 128, clipped), grey images repeated to RGB, and the extractor resizes
to 299x299 with TensorFlow-1 compatible bilinear interpolation, so the numbers match published FIDs.

Weights are found, in order: an explicit file; torch hub's cache (TORCH_HOME/hub/checkpoints, where
torch-fidelity and torchmetrics put them); a download from torch-fidelity's release (SHA-256 checked),
if allowed. Otherwise a DifflabError says which file to put where.

Note: torch-fidelity's Inception code itself needs only torch, but `import torch_fidelity` (its
__init__) imports its CLIP/VGG/DINOv2 extractors, which import torchvision; so the extractor needs
an importable torchvision matching the installed torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from difflab.metrics.features import batched, images_to_uint8
from difflab.utils.errors import DifflabError

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub convention: the hash in the file name prefixes its SHA-256
FEATURES = "2048"  # pool3 features used by FID and KID
LOGITS = "logits_unbiased"  # the 1008 logits without bias used by the Inception Score (torch-fidelity)


def inception_cache_path() -> Path:
    """Where torch hub (hence torch-fidelity and torchmetrics) caches the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _missing_weights(reason: str) -> DifflabError:
    return DifflabError(
        f"{reason}. FID, KID and IS need the FID Inception-v3 weights: download {INCEPTION_WEIGHTS_FILE} from "
        f"{INCEPTION_WEIGHTS_URL} and put it at {inception_cache_path()} (torch hub's cache; set TORCH_HOME to move "
        "it), or pass its path explicitly (inception_weights=...). Without them, use the digit metrics "
        "(fdd, kdd, precision_recall, class_coverage)."
    )


def resolve_inception_weights(
    path: str | Path | None = None,
    *,
    download: bool = True,
    downloader: Callable[..., None] | None = None,
) -> Path:
    """Path of the Inception weights: `path`, else the torch hub cache file, else a fresh download.

    `downloader(url, dst, hash_prefix=...)` defaults to torch.hub.download_url_to_file (which writes
    to a temp file and renames, and checks the SHA-256 prefix). Raises DifflabError naming the file,
    its URL and where to put it when no source works.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise _missing_weights(f"no Inception weights file at {p}")
        return p
    cached = inception_cache_path()
    if cached.is_file():
        return cached
    if not download:
        raise _missing_weights(f"{cached} does not exist and downloading is off")
    fetch = downloader if downloader is not None else torch.hub.download_url_to_file
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fetch(INCEPTION_WEIGHTS_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; a bad hash a RuntimeError
        raise _missing_weights(f"downloading {INCEPTION_WEIGHTS_URL} failed ({e})") from e
    return cached


def _feature_extractor_class() -> type[nn.Module]:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as e:
        raise DifflabError(
            f"the standard Inception-v3 comes from torch-fidelity, which cannot be imported ({e}). Install it "
            "with `pip install 'difflab[fid]'`; it imports torchvision, so a torchvision built for this torch "
            f"({torch.__version__}) must import too. Without them, use the digit metrics (fdd, kdd, ...)."
        ) from e
    return FeatureExtractorInceptionV3


class InceptionV3Features(nn.Module):
    """Feature extractor "inception": pool3 features (N, 2048) and unbiased logits (N, 1008).

    Wraps torch-fidelity's FeatureExtractorInceptionV3 (the network torchmetrics' FID/KID/IS use). The
    weights file is read with torch.load(weights_only=True) first, so only plain tensors are accepted
    before torch-fidelity loads it.
    """

    name = "inception"
    num_features = 2048
    num_classes = 1008

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        download: bool = True,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
    ):
        super().__init__()
        extractor_cls = _feature_extractor_class()
        path = resolve_inception_weights(weights, download=download)
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unpickling failure means the file is not plain weights
            raise _missing_weights(f"{path} is not a plain tensor state dict ({e})") from e
        self.net = extractor_cls("inception-v3-compat", [FEATURES, LOGITS], feature_extractor_weights_path=str(path))
        self.net.to(device)
        self.batch_size = batch_size
        self.weights_path = path

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        def run(x: Tensor) -> Tensor:
            feats, logits = self.net(images_to_uint8(x).to(self._device()))
            return torch.cat([feats, logits], dim=1)

        out = batched(run, images, self.batch_size)
        return out[:, : self.num_features], out[:, self.num_features :]

    def features(self, images: Tensor) -> Tensor:
        return self.features_and_logits(images)[0]

    def logits(self, images: Tensor) -> Tensor:
        return self.features_and_logits(images)[1]
