"""ImageFolder: mixed formats, sizes and modes; corrupt files; exact resize/crop; labels; captions; flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from difflab.data.datasets import collate
from difflab.data.images import ImageFolder
from difflab.utils.errors import DifflabError


def _gradient(width: int, height: int) -> Image.Image:
    """Greyscale image whose pixel (row r, column c) is 4 c + 2 r (so crops are identifiable)."""
    c = np.arange(width)[None, :]
    r = np.arange(height)[:, None]
    return Image.fromarray((4 * c + 2 * r).astype(np.uint8), mode="L")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "cats" / "deep").mkdir(parents=True)
    (root / "dogs").mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "cats" / "red.png")
    _gradient(60, 20).save(root / "cats" / "deep" / "wide.JPG", quality=100)
    rgba = Image.new("RGBA", (33, 33), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 12, 12))  # a transparent top-left block
    rgba.save(root / "dogs" / "blue.WebP", lossless=True)
    Image.new("P", (16, 24), 0).save(root / "dogs" / "palette.png")
    _gradient(20, 50).save(root / "dogs" / "tall.png")
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    noisy.save(root / "dogs" / "truncated.jpeg")
    data = (root / "dogs" / "truncated.jpeg").read_bytes()
    (root / "dogs" / "truncated.jpeg").write_bytes(data[: len(data) // 2])
    (root / "cats" / "fake.png").write_text("not an image at all")
    (root / "cats" / "readme.md").write_text("ignored: not an image extension")
    for stem, text in [("cats/red", "a red card"), ("cats/deep/wide", "a ramp"), ("dogs/blue", "blue"),
                       ("dogs/palette", "black"), ("dogs/tall", " a tall ramp \n")]:  # fmt: skip
        (root / f"{stem}.txt").write_text(text)
    return root


def _names(paths) -> set[str]:
    return {Path(p).name for p in paths}


def test_skip_counts_corrupt_and_fake_files(folder):
    ds = ImageFolder(folder, size=16)
    assert len(ds) == 5
    assert _names(ds.paths) == {"red.png", "wide.JPG", "blue.WebP", "palette.png", "tall.png"}
    assert _names(s.path for s in ds.skipped) == {"truncated.jpeg", "fake.png"}
    assert all(s.reason for s in ds.skipped)
    assert ds.data_shape == (3, 16, 16) and ds.num_classes is None and not ds.has_captions
    for i in range(len(ds)):
        x = ds[i]["x"]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1


def test_raise_names_the_first_bad_file(folder):
    with pytest.raises(DifflabError, match=r"fake\.png"):
        ImageFolder(folder, size=16, on_error="raise")
    (folder / "cats" / "fake.png").unlink()
    with pytest.raises(DifflabError, match=r"truncated\.jpeg.*on_error='skip'"):
        ImageFolder(folder, size=16, on_error="raise")


def test_pixel_values_modes_and_centre_crop(folder):
    ds = ImageFolder(folder, size=20)
    item = {Path(p).name: ds[i]["x"] for i, p in enumerate(ds.paths)}
    # Solid red PNG: exactly (1, -1, -1) everywhere after resize and crop.
    assert torch.equal(item["red.png"], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 20, 20))
    # RGBA: opaque blue stays blue, the transparent block (well inside after 33 -> 20) becomes white.
    assert torch.equal(item["blue.WebP"][:, 10, 10], torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.equal(item["blue.WebP"][:, 0, 0], torch.ones(3))
    # Palette image (index 0 = black) becomes black RGB.
    assert torch.equal(item["palette.png"], -torch.ones(3, 20, 20))
    # Tall 20 x 50 greyscale: shorter side is already 20, so the crop keeps rows 15..34 unresampled,
    # and L -> RGB repeats the grey level in the three channels.
    rows, cols = torch.meshgrid(torch.arange(15, 35), torch.arange(20), indexing="ij")
    expected = (4 * cols + 2 * rows).float() / 127.5 - 1
    assert torch.equal(item["tall.png"], expected.expand(3, 20, 20))


def test_greyscale_mode_and_shorter_side_resize(folder):
    ds = ImageFolder(folder, size=10, mode="L")
    assert ds.data_shape == (1, 10, 10)
    x = ds[[Path(p).name for p in ds.paths].index("tall.png")]["x"]
    assert x.shape == (1, 10, 10)
    # Independent route: resize the shorter side to 10 (20 x 50 -> 10 x 25), then crop rows 7..16.
    ref = _gradient(20, 50).resize((10, 25), Image.Resampling.BICUBIC).crop((0, 7, 10, 17))
    ref = torch.from_numpy(np.asarray(ref).astype(np.float32)) / 127.5 - 1
    assert (x[0] - ref).abs().max() < 4 / 127.5


def test_labels_from_subfolders_and_captions(folder):
    ds = ImageFolder(folder, size=8, labels_from_subfolders=True, captions=True)
    assert ds.classes == ["cats", "dogs"] and ds.num_classes == 2 and ds.has_captions
    for i, p in enumerate(ds.paths):
        item = ds[i]
        expected = 0 if "cats" in Path(p).relative_to(folder).parts else 1
        assert item["label"].dtype == torch.int64 and int(item["label"]) == expected
    caption = {Path(p).name: ds[i]["caption"] for i, p in enumerate(ds.paths)}
    assert caption["wide.JPG"] == "a ramp" and caption["tall.png"] == "a tall ramp"
    (folder / "dogs" / "tall.txt").unlink()
    with pytest.raises(DifflabError, match=r"tall\.txt"):
        ImageFolder(folder, size=8, captions=True)
    Image.new("L", (8, 8)).save(folder / "loose.png")
    with pytest.raises(DifflabError, match=r"loose\.png"):
        ImageFolder(folder, size=8, labels_from_subfolders=True)


def test_cache_matches_lazy_decoding_and_batches(folder):
    lazy = ImageFolder(folder, size=12, labels_from_subfolders=True)
    cached = ImageFolder(folder, size=12, labels_from_subfolders=True, cache=True)
    assert cached.cached.dtype == torch.uint8 and cached.cached.shape == (5, 3, 12, 12)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i]["x"], cached[i]["x"])
    batch = next(iter(DataLoader(cached, batch_size=5, collate_fn=collate)))
    assert batch["x"].shape == (5, 3, 12, 12) and batch["label"].tolist() == cached.labels.tolist()


def test_hflip_gives_both_orientations(folder):
    ds = ImageFolder(folder, size=20, hflip=True)
    i = [Path(p).name for p in ds.paths].index("tall.png")
    plain = ImageFolder(folder, size=20)[i]["x"]
    torch.manual_seed(0)
    seen = [ds[i]["x"] for _ in range(16)]
    flips = [torch.equal(x, plain.flip(-1)) for x in seen]
    assert all(f or torch.equal(x, plain) for f, x in zip(flips, seen, strict=True))
    assert 0 < sum(flips) < 16


def test_folder_errors(tmp_path):
    with pytest.raises(DifflabError, match="does not exist"):
        ImageFolder(tmp_path / "missing", size=8)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DifflabError, match=r"no images found.*\.jpeg, \.jpg, \.png, \.webp"):
        ImageFolder(tmp_path / "empty", size=8)
    for bad in (0, -3, 8.0, "32", True):
        with pytest.raises(DifflabError, match="positive integer"):
            ImageFolder(tmp_path / "empty", size=bad)
    with pytest.raises(DifflabError, match="valid image modes are: L, RGB"):
        ImageFolder(tmp_path / "empty", size=8, mode="CMYK")
    with pytest.raises(DifflabError, match="on_error"):
        ImageFolder(tmp_path / "empty", size=8, on_error="ignore")
    (tmp_path / "empty" / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DifflabError, match=r"none of the 1 images.*bad\.png"):
        ImageFolder(tmp_path / "empty", size=8)
