"""A small deterministic digit classifier: the offline feature space for evaluating digit models.

No Inception weights can be fetched here, so difflab trains its own judge: a 3-conv CNN on the
sklearn digits train split (difflab.data.load_digits), with a fixed seed, a fixed data order,
deterministic algorithms and one intra-op thread (so the float reductions, hence the weights, do not
depend on the machine's core count). It trains in a few seconds on a CPU and reaches about 99% test
accuracy. The weights are cached as safetensors (+ JSON with the test accuracy and the SHA-256 of the
training recipe) in `cache_dir()`, and loaded on later calls.

Its penultimate (64-d, post-ReLU) activations define the Fréchet Digit Distance (FDD), the digit
analogue of FID (Heusel et al. 2017): same formula, different feature space. FDD values are NOT
comparable with FID values, nor with FDDs measured by a classifier trained with another recipe.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from difflab.data.digits import load_digits
from difflab.metrics.features import batched
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write

RECIPE = {
    "version": 1,
    "data": "difflab.data.load_digits('train', size=8)",
    "arch": {"width": 32, "num_features": 64},
    "seed": 0,
    "epochs": 30,
    "batch_size": 64,
    "optimizer": "AdamW",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "schedule": "OneCycleLR",
    "augment": {"max_shift": 1, "p_resample_16": 0.5},
}


def recipe_sha256(recipe: dict = RECIPE) -> str:
    """SHA-256 of the canonical JSON of a training recipe (names the cache file)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    """$DIFFLAB_CACHE, else $XDG_CACHE_HOME/difflab, else ~/.cache/difflab."""
    if os.environ.get("DIFFLAB_CACHE"):
        return Path(os.environ["DIFFLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "difflab"


class DigitCNN(nn.Module):
    """conv-conv-pool-conv-pool-fc on 1x8x8 inputs; `body` ends at the penultimate features."""

    def __init__(self, width: int = 32, num_features: int = 64, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),  # (B, w, 8, 8)
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 4, 4)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 2, 2)
            nn.Flatten(), nn.Linear(8 * width, num_features), nn.ReLU(),  # (B, F)
        )  # fmt: skip
        self.head = nn.Linear(num_features, num_classes)  # (B, K)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def to_digit_input(images: Tensor) -> Tensor:
    """Validate images (N, C, H, W) in [-1, 1] and bring them to the classifier's 1x8x8 grid.

    C = 3 is averaged to grey; H = W >= 8 is area-resized to 8 (16x16 -> 2x2 means).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
        raise DifflabError(
            f"the digit classifier takes square images (N, 1 or 3, H, H); got shape {tuple(images.shape)}"
        )
    if images.shape[2] < 8:
        raise DifflabError(f"the digit classifier needs images of at least 8x8; got {images.shape[2]}x{images.shape[3]}")
    x = images.double()
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    return F.adaptive_avg_pool2d(x, 8) if x.shape[2] != 8 else x


class DigitClassifier(nn.Module):
    """Feature extractor "digits": features (N, 64) and logits (N, 10) of digits in [-1, 1].

    Attributes: `test_accuracy` on load_digits("test") and `recipe_sha256` of its training recipe.
    """

    name = "digits"
    num_classes = 10

    def __init__(self, width: int = 32, num_features: int = 64, batch_size: int = 1024):
        super().__init__()
        self.net = DigitCNN(width, num_features, self.num_classes)
        self.num_features = num_features
        self.batch_size = batch_size
        self.test_accuracy: float | None = None
        self.recipe_sha256: str | None = None
        self.eval()

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _net64(self) -> DigitCNN:
        """A float64 copy of the (float32-trained) network, for evaluation.

        float32 convolutions choose their kernels by batch size, so features moved by ~1e-7 with the
        batch split, and KID's polynomial-kernel sums amplify that to ~1e-5; in float64 the features
        of an image do not depend on its batch (to ~1e-15) nor on the thread count.
        """
        return copy.deepcopy(self.net).double()

    @torch.inference_mode()
    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(features (N, F), logits (N, K)) from one float64 forward pass."""
        net = self._net64()

        def run(x: Tensor) -> Tensor:
            h = net.body(to_digit_input(x).to(self._device()))
            return torch.cat([h, net.head(h)], dim=1)

        out = batched(run, images, self.batch_size)
        return out[:, : self.num_features], out[:, self.num_features :]

    @torch.inference_mode()
    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations (N, F), float64."""
        net = self._net64()
        return batched(lambda x: net.body(to_digit_input(x).to(self._device())), images, self.batch_size)

    @torch.inference_mode()
    def logits(self, images: Tensor) -> Tensor:
        """Class logits (N, K), float64."""
        net = self._net64()
        return batched(lambda x: net(to_digit_input(x).to(self._device())), images, self.batch_size)

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        """Fraction of images whose predicted class is `labels`."""
        return float((self.logits(images).argmax(1).cpu() == labels.cpu()).double().mean())


@contextlib.contextmanager
def _reproducible(seed: int) -> Iterator[None]:
    """Seeded global RNG, deterministic kernels and one thread, all restored on exit."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)


def _augment(x: Tensor, g: torch.Generator, max_shift: int, p_resample_16: float) -> Tensor:
    """Random integer shifts (background-padded), and with probability p the 8 -> 16 -> 8 round trip
    that 16x16 digits go through at evaluation, so both resolutions look familiar."""
    b, s, size = x.shape[0], max_shift, x.shape[-1]
    padded = F.pad(x, (s, s, s, s), value=-1.0)  # (B, 1, 8+2s, 8+2s)
    ar = torch.arange(size)
    oy, ox = torch.randint(0, 2 * s + 1, (2, b), generator=g)
    rows = (oy[:, None] + ar)[:, None, :, None].expand(b, 1, size, padded.shape[-1])
    cols = (ox[:, None] + ar)[:, None, None, :].expand(b, 1, size, size)
    shifted = padded.gather(2, rows).gather(3, cols)  # (B, 1, 8, 8)
    up = F.interpolate(shifted, size=2 * size, mode="bilinear", align_corners=False).clamp(-1, 1)
    resampled = F.adaptive_avg_pool2d(up, size)
    pick = torch.rand(b, generator=g) < p_resample_16
    return torch.where(pick[:, None, None, None], resampled, shifted)


def train_digit_classifier(
    recipe: dict = RECIPE, progress: Callable[[int, float], None] | None = None
) -> DigitClassifier:
    """Train the classifier from scratch, deterministically; sets `test_accuracy` and `recipe_sha256`.

    `progress(epoch, last_loss)` is called after each epoch.
    """
    x, y = load_digits("train")
    x_test, y_test = load_digits("test")
    aug = recipe["augment"]
    with _reproducible(recipe["seed"]):
        model = DigitClassifier(**recipe["arch"])
        g = torch.Generator().manual_seed(recipe["seed"])
        opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
        steps_per_epoch = -(-x.shape[0] // recipe["batch_size"])
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe["lr"], total_steps=recipe["epochs"] * steps_per_epoch
        )
        model.train()
        for epoch in range(recipe["epochs"]):
            for idx in torch.randperm(x.shape[0], generator=g).split(recipe["batch_size"]):
                xb = _augment(x[idx], g, aug["max_shift"], aug["p_resample_16"])
                loss = F.cross_entropy(model.net(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if progress is not None:
                progress(epoch, float(loss))
        model.eval()
    model.test_accuracy = model.accuracy(x_test, y_test)
    model.recipe_sha256 = recipe_sha256(recipe)
    return model


def classifier_paths(directory: Path | None = None, recipe: dict = RECIPE) -> tuple[Path, Path]:
    """(weights .safetensors, metadata .json) for a recipe in the cache directory."""
    stem = f"digit_classifier-{recipe_sha256(recipe)[:16]}"
    directory = Path(directory) if directory is not None else cache_dir()
    return directory / f"{stem}.safetensors", directory / f"{stem}.json"


def _load_cached(weights: Path, meta_path: Path, recipe: dict) -> DigitClassifier | None:
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("recipe_sha256") != recipe_sha256(recipe):
            return None
        model = DigitClassifier(**recipe["arch"])
        model.load_state_dict(load_file(weights))
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):  # missing, corrupt, stale: retrain
        return None
    model.test_accuracy = float(meta["test_accuracy"])
    model.recipe_sha256 = meta["recipe_sha256"]
    return model.eval()


def load_digit_classifier(
    directory: str | Path | None = None,
    *,
    recipe: dict = RECIPE,
    device: torch.device | str = "cpu",
    retrain: bool = False,
) -> DigitClassifier:
    """The cached digit classifier, trained (a few seconds) and cached atomically on first use.

    `directory` defaults to cache_dir(). A cache entry whose recipe hash differs is ignored.
    """
    weights, meta_path = classifier_paths(Path(directory) if directory is not None else None, recipe)
    model = None if retrain else _load_cached(weights, meta_path, recipe)
    if model is None:
        start = time.perf_counter()
        model = train_digit_classifier(recipe)
        seconds = time.perf_counter() - start
        try:
            weights.parent.mkdir(parents=True, exist_ok=True)
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            atomic_write(weights, lambda tmp: save_file(state, tmp))
            meta = {
                "name": DigitClassifier.name,
                "recipe": recipe,
                "recipe_sha256": model.recipe_sha256,
                "test_accuracy": model.test_accuracy,
                "train_seconds": round(seconds, 2),
                "torch": torch.__version__,
            }
            atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
        except OSError as e:
            raise DifflabError(
                f"cannot write the digit classifier cache in {weights.parent} ({e}); "
                "set DIFFLAB_CACHE to a writable directory"
            ) from e
    return model.to(device)
