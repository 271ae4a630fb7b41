"""The Hugging Face adapter on tiny data sets written in tmp_path (nothing downloaded)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.data.hf import HFImageDataset, import_datasets
from difflab.utils.errors import DifflabError

datasets = pytest.importorskip("datasets")

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


@pytest.fixture()
def saved(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["red", "green", "blue"]),
            "plain_label": datasets.Value("int64"),
            "text": datasets.Value("string"),
            "texts": datasets.Sequence(datasets.Value("string")),
        }
    )
    table = {
        "image": [Image.new("RGB", (10 + 3 * k, 12), c) for k, c in enumerate(COLOURS)],
        "label": [0, 1, 2],
        "plain_label": [4, 0, 4],
        "text": ["a red square", "a green square", "a blue square"],
        "texts": [["r1", "r2"], ["g1"], ["b1"]],
    }
    ds = datasets.Dataset.from_dict(table, features=features)
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds, "test": ds.select([2])}).save_to_disk(str(tmp_path / "dict"))
    return tmp_path


def test_saved_dataset_items(saved):
    ds = HFImageDataset(saved / "single", size=8, label_column="label", caption_column="text")
    assert len(ds) == 3 and ds.data_shape == (3, 8, 8) and ds.has_captions
    assert ds.num_classes == 3 and ds.classes == ["red", "green", "blue"]
    for k, colour in enumerate(COLOURS):
        item = ds[k]
        expected = torch.tensor(colour, dtype=torch.float32) / 127.5 - 1
        assert torch.equal(item["x"], expected[:, None, None].expand(3, 8, 8))
        assert item["label"].dtype == torch.int64 and int(item["label"]) == k
        assert item["caption"] == ["a red square", "a green square", "a blue square"][k]


def test_greyscale_plain_integer_labels_and_caption_lists(saved):
    ds = HFImageDataset(saved / "single", size=4, mode="L", label_column="plain_label", caption_column="texts")
    assert ds.data_shape == (1, 4, 4) and ds.num_classes == 5 and ds.classes is None
    # ITU-R 601 luma of pure red: L = 299 * 255 // 1000 = 76.
    assert torch.allclose(ds[0]["x"], torch.full((1, 4, 4), 76 / 127.5 - 1), atol=1 / 127.5)
    torch.manual_seed(0)
    assert {ds[0]["caption"] for _ in range(20)} == {"r1", "r2"}
    assert ds[1]["caption"] == "g1"


def test_splits_and_missing_columns(saved):
    test = HFImageDataset(saved / "dict", split="test", size=4, label_column="label")
    assert len(test) == 1 and int(test[0]["label"]) == 2
    with pytest.raises(DifflabError, match="its splits are: train, test"):
        HFImageDataset(saved / "dict", split="validation", size=4)
    with pytest.raises(DifflabError, match="column 'img' not found.*available columns: image, label"):
        HFImageDataset(saved / "single", image_column="img", size=4)
    with pytest.raises(DifflabError, match="caption column 'caption' not found"):
        HFImageDataset(saved / "single", caption_column="caption", size=4)
    with pytest.raises(DifflabError, match="non-negative integers"):
        HFImageDataset(saved / "single", label_column="text", size=4)
    with pytest.raises(DifflabError, match="positive integer"):
        HFImageDataset(saved / "single", size=0)


def test_load_dataset_route_on_a_local_image_folder(tmp_path):
    for name, colour in [("a", (255, 0, 0)), ("b", (0, 0, 255))]:
        (tmp_path / "raw" / name).mkdir(parents=True)
        Image.new("RGB", (9, 7), colour).save(tmp_path / "raw" / name / "img.png")
    ds = HFImageDataset(tmp_path / "raw", size=4, label_column="label", cache_dir=str(tmp_path / "cache"))
    assert ds.classes == ["a", "b"]
    by_label = {int(ds[i]["label"]): ds[i]["x"][:, 0, 0].tolist() for i in range(len(ds))}
    assert by_label == {0: [1.0, -1.0, -1.0], 1: [-1.0, -1.0, 1.0]}
    with pytest.raises(DifflabError, match="could not load Hugging Face dataset"):
        HFImageDataset(tmp_path / "nothing-here", size=4)


def test_uint8_array_column(tmp_path):
    arrays = np.zeros((2, 6, 6), dtype=np.uint8)
    arrays[1] = 255
    ds = datasets.Dataset.from_dict({"pixels": list(arrays)}).with_format("numpy")
    ds.save_to_disk(str(tmp_path / "arr"))
    loaded = HFImageDataset(tmp_path / "arr", image_column="pixels", size=6, mode="L")
    assert torch.equal(loaded[0]["x"], -torch.ones(1, 6, 6))
    assert torch.equal(loaded[1]["x"], torch.ones(1, 6, 6))
    datasets.Dataset.from_dict({"pixels": [np.full((6, 6), 0.5)]}).save_to_disk(str(tmp_path / "float"))
    with pytest.raises(DifflabError, match=r"row 0: the image column holds .*cast_column"):
        HFImageDataset(tmp_path / "float", image_column="pixels", size=6)[0]


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DifflabError, match=r"pip install 'difflab\[datasets\]'"):
        import_datasets()
