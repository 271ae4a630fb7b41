"""A folder of images (PNG, JPEG, WebP, found recursively) as a data set of (C, size, size) tensors in [-1, 1].

Every image goes through the same PIL pipeline, so folders of mixed sizes and modes work:
EXIF orientation applied, transparency composited over white, 16-bit greyscale scaled to 8 bits,
converted to the mode ("RGB" or "L"), the shorter side resized to `size` (bicubic, antialiased) and
the centre cropped to size x size (PIL's ImageOps.fit), then x = u8 / 127.5 - 1.

All files are decoded once up front (in threads: PIL releases the GIL) so that unreadable ones are
known before training and __len__ is true. Afterwards images are decoded lazily in __getitem__, i.e. in
the DataLoader workers; with cache=True the validation pass keeps them instead, in one uint8 tensor
(N, C, size, size), and __getitem__ is a slice. A truncated file counts as unreadable unless the caller
has set PIL.ImageFile.LOAD_TRUNCATED_IMAGES.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from difflab.utils.errors import DifflabError, check_choice

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp")
MODES = {"RGB": 3, "L": 1}
ON_ERROR = ("raise", "skip")
# What PIL raises for corrupt, truncated or unidentifiable files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

log = logging.getLogger(__name__)


class Skipped(NamedTuple):
    """A file left out of an ImageFolder, and why."""

    path: Path
    reason: str


def check_image_size(size: object) -> int:
    """`size` if it is a positive integer, else a DifflabError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DifflabError(f"image size must be a positive integer (pixels per side); got {size!r}")
    return size


def check_mode(mode: str) -> int:
    """The channel count of an image mode ("RGB": 3, "L": 1)."""
    return MODES[check_choice("image mode", mode, MODES)]


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert to `mode`, compositing transparency over white and scaling 16-bit greyscale to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)


def image_to_uint8(img: Image.Image, size: int, mode: str) -> Tensor:
    """A PIL image resized (shorter side), centre-cropped and converted: uint8 tensor (C, size, size)."""
    img = _to_mode(ImageOps.exif_transpose(img), mode)
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_image(source: str | os.PathLike | IO[bytes], size: int, mode: str) -> Tensor:
    """Open, fully decode and preprocess one image file: uint8 (C, size, size). PIL errors propagate."""
    with Image.open(source) as img:
        img.draft(mode, (size, size))  # JPEG only: DCT-domain downscaling, never below `size`
        img.load()
        return image_to_uint8(img, size, mode)


def to_unit_range(u8: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]: x = u8 / 127.5 - 1 (DDPM's data scaling, Ho et al. 2020 Sec. 3.3).

    [-1, 1] matches the unit-variance prior of the processes (seed 001's x_T ~ N(0, I)).
    """
    return u8.to(torch.float32) / 127.5 - 1.0


def find_images(root: Path) -> list[Path]:
    """Image files under `root`, recursively, extensions case-insensitive, in sorted order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class ImageFolder(Dataset):
    """Images under `root` as items {"x": (C, size, size) float32 in [-1, 1], "label"?, "caption"?}.

    labels_from_subfolders: the label is the index of the image's top-level subfolder among the sorted
        subfolder names (`.classes`); every image must then sit inside one.
    captions: read the caption of `a/b.png` from `a/b.txt` (stripped UTF-8); every image needs one.
    on_error: "skip" leaves unreadable files out and lists them in `.skipped` (path, reason);
        "raise" stops at the first with a DifflabError naming it.
    hflip: flip each item left-right with probability 1/2 (torch's global RNG, seeded per worker).
    cache: keep the decoded images in one uint8 tensor `.cached` (N, C, size, size) instead of re-decoding.
    threads: decoding threads of the up-front validation pass (default min(8, CPU count)).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int,
        mode: str = "RGB",
        hflip: bool = False,
        on_error: str = "skip",
        labels_from_subfolders: bool = False,
        captions: bool = False,
        cache: bool = False,
        threads: int | None = None,
    ):
        self.root = Path(root)
        self.size = check_image_size(size)
        self.mode = mode
        channels = check_mode(mode)
        check_choice("on_error policy", on_error, ON_ERROR)
        self.hflip = bool(hflip)
        if not self.root.exists():
            raise DifflabError(f"image folder {self.root} does not exist; check the path")
        if not self.root.is_dir():
            raise DifflabError(f"{self.root} is a file, not a folder of images; pass its parent folder")
        found = find_images(self.root)
        if not found:
            raise DifflabError(
                f"no images found in {self.root}: searched it and its subfolders for files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)} (any case)"
            )
        self.classes = self._class_names(found) if labels_from_subfolders else None

        decoded = self._decode_all(found, threads)
        self.skipped: list[Skipped] = []
        self.paths: list[Path] = []
        kept: list[Tensor] = []
        for path, result in zip(found, decoded, strict=True):
            if isinstance(result, Tensor):
                self.paths.append(path)
                kept.append(result)
            elif on_error == "raise":
                raise DifflabError(
                    f"cannot read image {path}: {result}; fix or delete the file, or pass on_error='skip'"
                )
            else:
                self.skipped.append(Skipped(path, result))
        if self.skipped:
            log.warning("skipped %d unreadable image(s) under %s", len(self.skipped), self.root)
        if not self.paths:
            first = self.skipped[0]
            raise DifflabError(
                f"none of the {len(found)} images in {self.root} could be read "
                f"(first: {first.path}: {first.reason})"
            )
        self.cached = torch.stack(kept) if cache else None
        del kept

        self.labels = None
        if self.classes is not None:
            index = {name: k for k, name in enumerate(self.classes)}
            self.labels = torch.tensor([index[p.relative_to(self.root).parts[0]] for p in self.paths])
        self.captions = self._read_captions(self.paths) if captions else None

        self.data_shape = (channels, self.size, self.size)
        self.num_classes = None if self.classes is None else len(self.classes)
        self.has_captions = self.captions is not None

    def _class_names(self, found: Sequence[Path]) -> list[str]:
        loose = [p for p in found if len(p.relative_to(self.root).parts) == 1]
        if loose:
            raise DifflabError(
                f"labels_from_subfolders needs every image inside a class folder of {self.root}, but "
                f"{len(loose)} sit directly in it (e.g. {loose[0].name}); move them into a subfolder"
            )
        return sorted({p.relative_to(self.root).parts[0] for p in found})

    def _decode_all(self, paths: Sequence[Path], threads: int | None) -> list[Tensor | str]:
        def attempt(path: Path) -> Tensor | str:
            try:
                return decode_image(path, self.size, self.mode)
            except DECODE_ERRORS as err:
                return f"{type(err).__name__}: {err}"

        workers = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(attempt, paths))

    @staticmethod
    def _read_captions(paths: Sequence[Path]) -> list[str]:
        sidecars = [p.with_suffix(".txt") for p in paths]
        missing = [s for s in sidecars if not s.is_file()]
        if missing:
            raise DifflabError(
                f"captions=True but {len(missing)} image(s) have no caption file, e.g. {missing[0]}; "
                "write one UTF-8 text file per image with the same name and the .txt extension"
            )
        return [s.read_text(encoding="utf-8").strip() for s in sidecars]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        if self.cached is not None:
            u8 = self.cached[i]
        else:
            try:
                u8 = decode_image(self.paths[i], self.size, self.mode)
            except DECODE_ERRORS as err:
                raise DifflabError(f"cannot read image {self.paths[i]} (it changed after loading): {err}") from err
        x = to_unit_range(u8)
        if self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        item = {"x": x}
        if self.labels is not None:
            item["label"] = self.labels[i]
        if self.captions is not None:
            item["caption"] = self.captions[i]
        return item
