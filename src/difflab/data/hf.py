"""Hugging Face `datasets` as a difflab image data set (optional dependency, imported lazily).

`path_or_name` is either a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
(read with `datasets.load_from_disk`) or anything `datasets.load_dataset` accepts: a hub id (which
needs the network or the local Hugging Face cache), a local data folder or a loading script.
Images are preprocessed exactly like ImageFolder's (shorter side resized, centre crop, mode, [-1, 1]).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from difflab.data.images import DECODE_ERRORS, check_image_size, check_mode, image_to_uint8, to_unit_range
from difflab.utils.errors import DifflabError


def import_datasets() -> Any:
    """The `datasets` module, or a DifflabError that says how to install it."""
    try:
        import datasets
    except ImportError as err:
        raise DifflabError(
            "the Hugging Face adapter needs the `datasets` package: pip install 'difflab[datasets]'"
        ) from err
    return datasets


def _is_saved_folder(path: Path) -> bool:
    """True for a folder written by save_to_disk (a Dataset has state.json, a DatasetDict dataset_dict.json)."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def load_hf_split(path_or_name: str | os.PathLike, split: str = "train", **load_kwargs: Any) -> Any:
    """One split of a saved folder (load_from_disk) or of anything load_dataset accepts, as a datasets.Dataset."""
    datasets = import_datasets()
    path = Path(path_or_name)
    if path.is_dir() and _is_saved_folder(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DifflabError(
                    f"split {split!r} not in the saved dataset {path}; its splits are: {', '.join(loaded)}"
                )
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(str(path_or_name), split=split, **load_kwargs)
    except (OSError, ValueError) as err:
        raise DifflabError(
            f"could not load Hugging Face dataset {str(path_or_name)!r} (split {split!r}): {err}. Pass a folder "
            "written by save_to_disk, a local data folder, or a hub id that is reachable or cached"
        ) from err


def _check_column(dataset: Any, column: str, role: str, name: str) -> None:
    if column not in dataset.column_names:
        raise DifflabError(
            f"{role} column {column!r} not found in dataset {name!r}; available columns: "
            f"{', '.join(dataset.column_names)}"
        )


def _as_pil(value: Any, row: int) -> Image.Image:
    """A PIL image from what an image column holds: an Image, {"bytes", "path"}, a path, or pixel array."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:
        return Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, dict) and value.get("path") is not None:
        return Image.open(value["path"])
    if isinstance(value, str):
        return Image.open(value)
    arr = np.asarray(value) if isinstance(value, (np.ndarray, list)) else np.empty(0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    pixels = np.issubdtype(arr.dtype, np.integer) and arr.size > 0 and 0 <= arr.min() <= arr.max() <= 255
    if pixels and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        return Image.fromarray(arr.astype(np.uint8))
    raise DifflabError(
        f"row {row}: the image column holds a {type(value).__name__}, not an image or an (H, W[, C]) array of "
        "integers in 0..255; cast it with dataset.cast_column(column, datasets.Image())"
    )


class HFImageDataset(Dataset):
    """Items {"x": (C, size, size) float32 in [-1, 1], "label"?: int64, "caption"?: str} from `datasets`.

    label_column: integer labels; num_classes from a ClassLabel feature, else max label + 1.
    caption_column: a string, or a list of strings of which each access picks one at random.
    load_kwargs go to datasets.load_dataset (e.g. data_dir, revision).
    """

    def __init__(
        self,
        path_or_name: str | os.PathLike,
        split: str = "train",
        image_column: str = "image",
        label_column: str | None = None,
        caption_column: str | None = None,
        size: int = 32,
        mode: str = "RGB",
        hflip: bool = False,
        **load_kwargs: Any,
    ):
        self.size = check_image_size(size)
        self.mode = mode
        channels = check_mode(mode)
        self.hflip = bool(hflip)
        name = str(path_or_name)
        dataset = load_hf_split(path_or_name, split, **load_kwargs)
        columns = [image_column]
        _check_column(dataset, image_column, "image", name)
        self.classes: list[str] | None = None
        self.num_classes: int | None = None
        if label_column is not None:
            _check_column(dataset, label_column, "label", name)
            columns.append(label_column)
            self.num_classes, self.classes = self._label_space(dataset, label_column)
        if caption_column is not None:
            _check_column(dataset, caption_column, "caption", name)
            columns.append(caption_column)
        if len(dataset) == 0:
            raise DifflabError(f"split {split!r} of dataset {name!r} has no rows")
        self.dataset = dataset.select_columns(columns)
        self.image_column, self.label_column, self.caption_column = image_column, label_column, caption_column
        self.data_shape = (channels, self.size, self.size)
        self.has_captions = caption_column is not None

    @staticmethod
    def _label_space(dataset: Any, column: str) -> tuple[int, list[str] | None]:
        feature = dataset.features[column]
        names = getattr(feature, "names", None)
        if names is not None:
            return len(names), list(names)
        values = np.asarray(dataset.unique(column))
        if values.size == 0 or not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
            raise DifflabError(
                f"label column {column!r} must hold non-negative integers; found values like {values[:5].tolist()}"
            )
        return int(values.max()) + 1, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        row = self.dataset[int(i)]
        try:
            u8 = image_to_uint8(_as_pil(row[self.image_column], int(i)), self.size, self.mode)
        except DifflabError:
            raise
        except DECODE_ERRORS as err:
            raise DifflabError(f"row {int(i)}: cannot decode the image: {err}") from err
        x = to_unit_range(u8)
        if self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        item = {"x": x}
        if self.label_column is not None:
            item["label"] = torch.tensor(int(row[self.label_column]), dtype=torch.int64)
        if self.caption_column is not None:
            caption = row[self.caption_column]
            if isinstance(caption, (list, tuple)):
                caption = caption[int(torch.randint(len(caption), ()))]
            item["caption"] = str(caption)
        return item
