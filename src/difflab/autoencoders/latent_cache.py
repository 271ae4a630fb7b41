"""The latents of a data set, encoded once and memory-mapped: what a latent diffusion run trains on.

Latent diffusion (Rombach et al. 2022; seed 000 "latent diffusion": z = E(x), diffusion on z, x = D(z);
seed 004 step 1 "VAE compression") never needs the encoder during training, only z = s E(x) of every
training image (`Autoencoder.to_latent`, where the scale s is applied). So the data set is encoded once
(batched, no_grad) into a folder, by default RUN/latents/:

    latents.npy         float32 (N, c, h, w), or (N, 2, c, h, w) with flips: [z(x), z(flip(x))]
    field-<name>.npy    every other item field, stacked: label (N,) int64, attributes (N, 4), caption (N,)
                        fixed-width unicode (no pickle)
    cache.json          the autoencoder's fingerprint, the data key (data set name and options), N, the
                        latent and image shapes, num_classes, has_captions, the fields

The folder is built beside its final place and renamed into it when complete (atomic: a crash leaves no
half cache), and cache.json is its manifest. A cache is reused only when the fingerprint and the data key
match; any mismatch is one DifflabError naming the fix. A left-right flip of x is not a flip of z, so a
data set that flips at random (hflip) caches both latents and `LatentDataset` draws between them with
torch's global RNG, which the trainer seeds per item (difflab.train.data).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from difflab.autoencoders.base import Autoencoder
from difflab.data.datasets import collate
from difflab.utils.errors import DifflabError
from difflab.utils.progress import Progress

LATENTS, MANIFEST = "latents.npy", "cache.json"
VERSION = 1


def _field_file(name: str) -> str:
    return f"field-{name}.npy"


def _jsonable(obj):
    """The value as JSON reads it back (tuples become lists), so keys compare equal after a round trip."""
    return json.loads(json.dumps(obj))


def _fix(folder: Path) -> str:
    return f"delete {folder} to encode the data again"


class LatentDataset(Dataset):
    """Items of the original data set with "x" replaced by its cached latent z = s E(x) (c, h, w) float32.

    data_shape: the latent shape; image_shape: the images'; value_range None (latents are unbounded);
    num_classes / has_captions: the original data set's; fingerprint: the autoencoder's.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        m = self.manifest
        try:
            self.latents = np.load(self.folder / LATENTS, mmap_mode="r", allow_pickle=False)
            self.fields = {name: np.load(self.folder / _field_file(name), mmap_mode="r", allow_pickle=False)
                           for name in m["fields"]}
        except (OSError, ValueError) as e:
            raise DifflabError(f"the latent cache {self.folder} is damaged ({type(e).__name__}: {e}): "
                               f"{_fix(self.folder)}") from None
        self.flips = bool(m["flips"])
        expect = (m["count"], *([2] if self.flips else []), *m["latent_shape"])
        bad = [n for n, a in self.fields.items() if len(a) != m["count"]]
        if tuple(self.latents.shape) != expect or self.latents.dtype != np.float32 or bad:
            raise DifflabError(f"the latent cache {self.folder} is damaged (latents {self.latents.shape} "
                               f"{self.latents.dtype}, expected {expect} float32): {_fix(self.folder)}")
        self.data_shape = tuple(m["latent_shape"])
        self.image_shape = tuple(m["image_shape"])
        self.num_classes = m["num_classes"]
        self.has_captions = bool(m["has_captions"])
        self.value_range = None
        self.fingerprint = m["fingerprint"]

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def _item_fields(self, index) -> dict:
        out = {}
        for name, array in self.fields.items():
            value = array[index]
            out[name] = str(value) if array.dtype.kind == "U" else torch.from_numpy(np.array(value))
        return out

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} latents")
        z = self.latents[i]
        if self.flips:
            z = z[int(bool(torch.rand(()) < 0.5))]
        return {"x": torch.from_numpy(np.array(z)), **self._item_fields(i)}

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """A batch in one memory-mapped read; flips drawn in one call from torch's global RNG."""
        idx = np.asarray(indices, dtype=np.int64)
        z = torch.from_numpy(np.array(self.latents[idx]))
        if self.flips:
            pick = (torch.rand(len(idx)) < 0.5).long()
            z = z[torch.arange(len(idx)), pick]
        fields = {name: array[idx] for name, array in self.fields.items()}
        return [{"x": z[k], **{name: str(a[k]) if a.dtype.kind == "U" else torch.from_numpy(np.array(a[k]))
                               for name, a in fields.items()}} for k in range(len(idx))]


def read_manifest(folder: Path) -> dict:
    """cache.json of a latent cache folder; one DifflabError when it is missing or damaged."""
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text())
        for key in ("fingerprint", "data", "count", "latent_shape", "image_shape", "fields", "flips"):
            m[key]  # noqa: B018 (each one must be there)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DifflabError(f"the latent cache {folder} is damaged ({type(e).__name__}: {e}): {_fix(folder)}") from None
    return m


def _check_fingerprint(fingerprint: str) -> None:
    if not isinstance(fingerprint, str) or not fingerprint:
        raise DifflabError("the autoencoder has no fingerprint, so a latent cache could not tell it from another: "
                           "load it with difflab.jobs.autoencoder_runs.load_autoencoder, which sets one")


def check_cache(folder: Path, fingerprint: str, key: dict) -> None:
    """A cache of another autoencoder or other data is refused with the fix."""
    _check_fingerprint(fingerprint)
    m = read_manifest(folder)
    if m["fingerprint"] != fingerprint:
        raise DifflabError(
            f"the autoencoder changed since the latent cache {folder} was built (fingerprint {m['fingerprint'][:12]}, "
            f"now {fingerprint[:12]}): give the run its own autoencoder again (--set model.autoencoder=... as it "
            f"was trained, {m.get('autoencoder')!r}), or {_fix(folder)} with the new one (a resumed denoiser was "
            "trained on the old latents)")
    if m["data"] != _jsonable(key):
        raise DifflabError(f"the latent cache {folder} holds the latents of {m['data']}, but the run's data is "
                           f"{_jsonable(key)}: restore the data options, or {_fix(folder)}")


def _side_fields(items: dict, count: int) -> dict[str, np.ndarray]:
    """A collated batch's fields other than "x" as numpy arrays (strings as fixed-width unicode)."""
    out = {}
    for name, value in items.items():
        if name == "x":
            continue
        if not name.replace("_", "").isalnum():
            raise DifflabError(f"an item field named {name!r} cannot be cached; name fields with letters, digits, _")
        array = np.array(value) if isinstance(value, list) else value.cpu().numpy()
        if len(array) != count:
            raise DifflabError(f"item field {name!r} has {len(array)} values for {count} items")
        out[name] = array
    return out


@torch.no_grad()
def _encode(autoencoder, x: Tensor, device) -> Tensor:
    Autoencoder.check_image_size(autoencoder, x)  # one message when H, W are not multiples of f
    return autoencoder.to_latent(x.to(device=device, dtype=torch.float32)).float().cpu()


def build_latent_cache(autoencoder, dataset: Dataset, folder: str | os.PathLike, *, key: dict, flips: bool = False,
                       batch_size: int = 64, device=None, progress: bool = True, source: str | None = None) -> Path:
    """Encode `dataset` (items {"x": image in [-1, 1], ...}) with autoencoder.to_latent into `folder`
    (module docstring), which must not exist yet. key: what the data is (its name and options; compared on
    reuse); flips: cache z(flip(x)) too (for data that flips at random: give the data set without flips);
    source: the autoencoder's name, recorded for messages."""
    folder = Path(folder)
    _check_fingerprint(autoencoder.fingerprint)
    if folder.exists():
        raise DifflabError(f"{folder} already exists: reuse it with open_latent_cache, or {_fix(folder)}")
    n = len(dataset)
    if n == 0:
        raise DifflabError("the data set is empty: there is nothing to encode")
    device = next(iter(autoencoder.parameters())).device if device is None else device
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        latents, fields, row, start = None, {}, 0, time.perf_counter()
        with Progress(n, f"encode {n} images to latents", unit="img", enabled=progress) as bar:
            for batch in loader:
                x = batch["x"]
                z = _encode(autoencoder, x, device)  # (b, c, h, w)
                if flips:
                    z = torch.stack([z, _encode(autoencoder, x.flip(-1), device)], dim=1)  # (b, 2, c, h, w)
                if latents is None:
                    image_shape, latent_shape = tuple(x.shape[1:]), tuple(z.shape[2 if flips else 1:])
                    latents = np.lib.format.open_memmap(tmp / LATENTS, mode="w+", dtype=np.float32,
                                                        shape=(n, *z.shape[1:]))
                latents[row : row + len(z)] = z.numpy()
                for name, array in _side_fields(batch, len(z)).items():
                    fields.setdefault(name, []).append(array)
                row += len(z)
                bar.advance(len(z))
        latents.flush()
        del latents
        for name, parts in fields.items():
            np.save(tmp / _field_file(name), np.concatenate(parts), allow_pickle=False)
        manifest = {
            "version": VERSION, "fingerprint": autoencoder.fingerprint, "autoencoder": source,
            "latent_scale": float(autoencoder.latent_scale), "data": _jsonable(key), "count": n,
            "latent_shape": list(latent_shape), "image_shape": list(image_shape), "flips": bool(flips),
            "fields": sorted(fields), "num_classes": getattr(dataset, "num_classes", None),
            "has_captions": bool(getattr(dataset, "has_captions", False)),
            "encode_seconds": round(time.perf_counter() - start, 3),
        }  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def open_latent_cache(folder: str | os.PathLike, fingerprint: str, key: dict) -> LatentDataset | None:
    """The cache in `folder` as a LatentDataset when it was built with this autoencoder (fingerprint) from
    this data (key); None when there is none; a mismatch or damage is one DifflabError naming the fix."""
    folder = Path(folder)
    if not folder.exists():
        return None
    check_cache(folder, fingerprint, key)
    return LatentDataset(folder)
