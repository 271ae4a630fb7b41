"""Inception weights resolution (explicit file, torch hub cache, download, clear failure) and uint8 input."""

from __future__ import annotations

import importlib.util
import urllib.error

import pytest
import torch

from difflab.metrics import (
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    InceptionV3Features,
    images_to_uint8,
    inception_cache_path,
    resolve_inception_weights,
)
from difflab.utils import DifflabError


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_cache_path_is_torch_hubs(torch_home):
    assert inception_cache_path() == torch_home / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE


def test_explicit_file_wins(tmp_path, torch_home):
    weights = tmp_path / "my-inception.pth"
    weights.write_bytes(b"x")
    assert resolve_inception_weights(weights, download=False) == weights
    with pytest.raises(DifflabError, match="no Inception weights file at"):
        resolve_inception_weights(tmp_path / "missing.pth")


def test_hub_cache_file_is_found(torch_home):
    cached = inception_cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    calls = []
    assert resolve_inception_weights(downloader=lambda *a, **k: calls.append(a)) == cached
    assert not calls  # no download when the cache has the file


def test_download_goes_to_the_hub_cache_with_the_hash_prefix(torch_home):
    calls = []

    def fake_download(url, dst, hash_prefix=None):
        calls.append((url, dst, hash_prefix))
        open(dst, "wb").close()

    path = resolve_inception_weights(downloader=fake_download)
    assert calls == [(INCEPTION_WEIGHTS_URL, str(inception_cache_path()), "6726825d")]
    assert path == inception_cache_path() and path.is_file()


def test_offline_error_names_the_file_its_url_and_where_to_put_it(torch_home):
    def offline(url, dst, hash_prefix=None):
        raise urllib.error.URLError("no network")

    for kwargs in ({"downloader": offline}, {"download": False}):
        with pytest.raises(DifflabError) as info:
            resolve_inception_weights(**kwargs)
        msg = str(info.value)
        assert INCEPTION_WEIGHTS_FILE in msg and INCEPTION_WEIGHTS_URL in msg and str(inception_cache_path()) in msg


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_without_torch_fidelity_the_error_says_what_to_install(torch_home):
    with pytest.raises(DifflabError, match=r"torch-fidelity.*torchvision"):
        InceptionV3Features(download=False)


def test_images_to_uint8_quantizes_like_saving_a_png():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2, -3.0]).reshape(1, 1, 1, 7)
    u8 = images_to_uint8(x)
    assert u8.dtype == torch.uint8 and u8.shape == (1, 3, 1, 7)  # grey repeated to RGB
    # round((x + 1) * 127.5), clipped to [0, 255]
    assert u8[0, 0, 0].tolist() == [0, 0, 128, 191, 255, 255, 0]
    assert torch.equal(u8[0, 0], u8[0, 2])
    rgb = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert images_to_uint8(rgb) is rgb
    with pytest.raises(DifflabError, match=r"expected images \(N, 1 or 3, H, W\)"):
        images_to_uint8(torch.zeros(2, 2, 4, 4))
