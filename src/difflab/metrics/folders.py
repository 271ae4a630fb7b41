"""Folders of images as streams of batches for `difflab eval --real DIR --fake DIR`.

Images are evaluated as they are: no resizing and no cropping (a resize would hide a size mismatch
between real and generated images and change the metric). Every file's header is read up front to
check that all images of a folder share one size and one mode family (grey or colour); then the batches
decode lazily, so memory stays constant in the number of images. Decoding and the [-1, 1] mapping
(x = u8 / 127.5 - 1) are difflab.data.images', the same as training sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from difflab.data.images import DECODE_ERRORS, decode_image, find_images, to_unit_range
from difflab.utils.errors import DifflabError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class ImageFolderBatches:
    """Re-iterable batches (B, C, H, W) float32 in [-1, 1] of every image under `root` (recursive, sorted).

    Attributes: `root`, `paths`, `n`, `size` (H, W), `mode` ("L" or "RGB").
    """

    def __init__(self, root: str | os.PathLike, batch_size: int = 256):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DifflabError(f"image folder {self.root} does not exist or is not a folder; check the path")
        if batch_size < 1:
            raise DifflabError(f"batch size must be a positive integer; got {batch_size}")
        self.batch_size = batch_size
        self.paths = find_images(self.root)
        if not self.paths:
            raise DifflabError(f"no images (.png, .jpg, .jpeg, .webp) found in {self.root} or its subfolders")
        headers = [self._header(p) for p in self.paths]
        self.size, self.mode = headers[0]
        for path, (size, mode) in zip(self.paths, headers, strict=True):
            if size != self.size or mode != self.mode:
                raise DifflabError(
                    f"images in {self.root} differ: {self.paths[0].name} is {_describe(self.size, self.mode)} but "
                    f"{path.relative_to(self.root)} is {_describe(size, mode)}; every image of a folder must have "
                    "the same size and mode (resize/convert them first)"
                )
        if self.size[0] != self.size[1]:
            raise DifflabError(
                f"images in {self.root} are {self.size[0]}x{self.size[1]}; the metrics take square images"
            )
        self.n = len(self.paths)

    @staticmethod
    def _header(path: Path) -> tuple[tuple[int, int], str]:
        try:
            with Image.open(path) as img:  # reads the header only
                w, h = img.size
                return (h, w), ("L" if img.mode in GREY_MODES else "RGB")
        except DECODE_ERRORS as e:
            raise DifflabError(f"cannot read image {path}: {e}; fix or delete the file") from e

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Tensor]:
        size = self.size[0]
        for start in range(0, self.n, self.batch_size):
            chunk = self.paths[start : start + self.batch_size]
            try:
                u8 = torch.stack([decode_image(p, size, self.mode) for p in chunk])
            except DECODE_ERRORS as e:
                raise DifflabError(f"cannot decode an image in {self.root} ({e}); fix or delete it") from e
            yield to_unit_range(u8)


def _describe(size: tuple[int, int], mode: str) -> str:
    return f"{size[0]}x{size[1]} {'greyscale' if mode == 'L' else 'colour'}"


def load_image_folder_batches(directory: str | os.PathLike, batch_size: int = 256) -> ImageFolderBatches:
    """The images of `directory` as lazily decoded batches in [-1, 1], all of one size and mode."""
    return ImageFolderBatches(directory, batch_size)


def check_same_images(a: ImageFolderBatches, b: ImageFolderBatches) -> None:
    """One clear DifflabError if two folders hold images of different sizes or modes."""
    if a.size != b.size or a.mode != b.mode:
        raise DifflabError(
            f"{a.root} holds {_describe(a.size, a.mode)} images but {b.root} holds {_describe(b.size, b.mode)} "
            "ones; compare images of the same size and mode (resize/convert one folder first)"
        )
