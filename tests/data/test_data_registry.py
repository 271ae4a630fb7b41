"""The item format: collate, ArrayData, digits, and the build_dataset registry with its errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from difflab.data.datasets import DATASETS, ArrayData, build_dataset, collate
from difflab.data.digits import digit_caption, load_digits
from difflab.data.shapes import holdout_combos
from difflab.data.toy2d import sample_toy_labeled
from difflab.utils.errors import DifflabError


def test_collate_stacks_tensors_and_lists_captions():
    items = [
        {"x": torch.full((2, 3), float(i)), "label": torch.tensor(i), "caption": f"c{i}", "w": 0.5 * i}
        for i in range(4)
    ]
    batch = collate(items)
    assert torch.equal(batch["x"], torch.arange(4.0)[:, None, None].expand(4, 2, 3))
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["caption"] == ["c0", "c1", "c2", "c3"]
    assert torch.equal(batch["w"], torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64))
    with pytest.raises(DifflabError, match="same keys"):
        collate([{"x": torch.zeros(1)}, {"x": torch.zeros(1), "label": torch.tensor(0)}])
    with pytest.raises(DifflabError, match="empty"):
        collate([])


def test_array_data_items_and_validation():
    x = torch.randn(6, 2)
    ds = ArrayData(x, torch.tensor([0, 2, 1, 0, 2, 1], dtype=torch.int32), [f"t{i}" for i in range(6)])
    assert len(ds) == 6 and ds.data_shape == (2,) and ds.num_classes == 3 and ds.has_captions
    item = ds[4]
    assert torch.equal(item["x"], x[4]) and item["label"].dtype == torch.int64 and int(item["label"]) == 2
    assert item["caption"] == "t4"
    batch = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate)))
    assert torch.equal(batch["x"], x) and batch["caption"][5] == "t5"
    assert ArrayData(x).num_classes is None and "label" not in ArrayData(x)[0]
    with pytest.raises(DifflabError, match=r"labels must be integers of shape \(6,\)"):
        ArrayData(x, torch.zeros(5, dtype=torch.long))
    with pytest.raises(DifflabError, match="labels must be integers"):
        ArrayData(x, torch.zeros(6))
    with pytest.raises(DifflabError, match="6 strings"):
        ArrayData(x, captions=["a"] * 5)
    with pytest.raises(DifflabError, match="floating-point"):
        ArrayData(torch.zeros(6, 2, dtype=torch.long))
    with pytest.raises(DifflabError, match="num_classes=2"):
        ArrayData(x, torch.arange(6), num_classes=2)


def test_toy2d_registry_entry_matches_the_sampler():
    ds = build_dataset("toy2d", name="moons", n=64, seed=3)
    x, labels = sample_toy_labeled("moons", 64, torch.Generator().manual_seed(3))
    assert torch.equal(ds.x, x) and torch.equal(ds.labels, labels)
    assert ds.data_shape == (2,) and ds.num_classes == 2
    roll = build_dataset("toy2d", name="swissroll", n=8)
    assert roll.num_classes is None and set(roll[0]) == {"x"}


def test_digits_registry_entry():
    ds = build_dataset("digits", split="test", size=16)
    images, labels = load_digits("test", 16)
    assert ds.data_shape == (1, 16, 16) and ds.num_classes == 10 and len(ds) == len(labels) == 360
    assert torch.equal(ds.x, images) and images.min() >= -1 and images.max() <= 1
    assert all(ds[i]["caption"] == digit_caption(int(labels[i])) for i in range(0, 360, 37))
    assert ds[0]["caption"].startswith("a handwritten ")
    assert not build_dataset("digits", captions=False).has_captions
    with pytest.raises(DifflabError, match="valid digits splits are: all, test, train"):
        build_dataset("digits", split="val")


def test_shapes_and_folder_registry_entries(tmp_path):
    shapes = build_dataset("shapes", n=40, seed=1, combos="holdout")
    assert {tuple(p) for p in shapes.attributes[:, :2].tolist()} <= set(holdout_combos())
    (tmp_path / "a").mkdir()
    Image.new("RGB", (12, 12), (0, 255, 0)).save(tmp_path / "a" / "g.png")
    folder = build_dataset("folder", root=tmp_path, size=4, labels_from_subfolders=True)
    assert folder.num_classes == 1 and torch.equal(folder[0]["x"][:, 0, 0], torch.tensor([-1.0, 1.0, -1.0]))


def test_registry_errors_name_the_valid_choices():
    assert sorted(DATASETS) == ["digits", "folder", "hf", "shapes", "toy2d"]
    with pytest.raises(DifflabError, match="unknown dataset 'mnist'; valid datasets are: digits, folder, hf"):
        build_dataset("mnist")
    with pytest.raises(DifflabError, match="'toy2d'.*unexpected keyword.*options are: name, n, seed"):
        build_dataset("toy2d", distribution="moons")
    with pytest.raises(DifflabError, match="'folder'.*missing a required argument: 'root'"):
        build_dataset("folder", size=8)
    with pytest.raises(DifflabError, match="valid toy distributions"):
        build_dataset("toy2d", name="rings")
