"""The latent cache: encoded once, memory-mapped, reused only for the same autoencoder and data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflab.autoencoders.latent_cache import LatentDataset, build_latent_cache, open_latent_cache
from difflab.data.datasets import ArrayData
from difflab.data.shapes import Shapes
from difflab.utils.errors import DifflabError
from tests.latent.standin import PoolAutoencoder

KEY = {"name": "shapes", "options": {"n": 10, "seed": 3}}


def test_cache_holds_scaled_latents_and_every_other_field(tmp_path):
    data = Shapes(10, seed=3)
    ae = PoolAutoencoder(scale=2.0)
    build_latent_cache(ae, data, tmp_path / "latents", key=KEY, batch_size=4, progress=False)
    cached = open_latent_cache(tmp_path / "latents", "pool-v1", KEY)
    assert isinstance(cached.latents, np.memmap)
    assert (len(cached), cached.data_shape, cached.image_shape) == (10, (3, 8, 8), (3, 32, 32))
    assert cached.value_range is None and cached.has_captions and cached.num_classes is None
    images = data.render(list(range(10)))
    for i in (0, 7):
        item = cached[i]
        # z = s * E(x) with E the 4x4 average pool, computed here independently of the cache
        torch.testing.assert_close(item["x"], 2.0 * images[i].reshape(3, 8, 4, 8, 4).mean((2, 4)))
        assert item["caption"] == data.caption(i)
        assert torch.equal(item["attributes"], data.attributes[i])
    batch = cached.__getitems__([7, 0])
    assert torch.equal(batch[0]["x"], cached[7]["x"]) and batch[1]["caption"] == data.caption(0)


def test_reuse_encodes_nothing_and_mismatches_name_the_fix(tmp_path):
    ae = PoolAutoencoder()
    folder = build_latent_cache(ae, Shapes(10, seed=3), tmp_path / "latents", key=KEY, progress=False)
    assert ae.calls == 10
    assert len(open_latent_cache(folder, "pool-v1", json.loads(json.dumps(KEY)))) == 10
    assert ae.calls == 10
    assert open_latent_cache(tmp_path / "none", "pool-v1", KEY) is None
    with pytest.raises(DifflabError, match=r"autoencoder changed since the latent cache .* delete .*latents"):
        open_latent_cache(folder, "other", KEY)
    with pytest.raises(DifflabError, match=r"restore the data options, or delete"):
        open_latent_cache(folder, "pool-v1", {**KEY, "options": {"n": 11, "seed": 3}})
    with pytest.raises(DifflabError, match="already exists"):
        build_latent_cache(ae, Shapes(10, seed=3), folder, key=KEY, progress=False)
    (folder / "latents.npy").write_bytes(b"broken")
    with pytest.raises(DifflabError, match="is damaged .* delete"):
        open_latent_cache(folder, "pool-v1", KEY)
    (folder / "cache.json").write_text("{")
    with pytest.raises(DifflabError, match="is damaged .* delete"):
        open_latent_cache(folder, "pool-v1", KEY)


def test_flips_cache_both_latents_and_draw_between_them(tmp_path):
    x = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    data = ArrayData(x, labels=torch.tensor([0, 1]))
    folder = build_latent_cache(PoolAutoencoder(factor=2, scale=1.0), data, tmp_path / "l", key={"k": 1}, flips=True,
                                progress=False)
    cached = LatentDataset(folder)
    plain, flipped = F.avg_pool2d(x[1], 2), F.avg_pool2d(x[1].flip(-1), 2)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        z = cached[1]["x"]
        assert torch.equal(z, plain) or torch.equal(z, flipped)
        seen.add(torch.equal(z, flipped))
    assert seen == {True, False} and cached[1]["label"] == 1 and cached.num_classes == 2


def test_images_not_divisible_by_f_and_no_fingerprint_are_refused_leaving_nothing(tmp_path):
    data = ArrayData(torch.zeros(2, 3, 10, 10))
    with pytest.raises(DifflabError, match="10x10 cannot be encoded .* factor 4; resize or crop"):
        build_latent_cache(PoolAutoencoder(), data, tmp_path / "l", key={}, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DifflabError, match="no fingerprint"):
        build_latent_cache(PoolAutoencoder(fingerprint=""), data, tmp_path / "l", key={}, progress=False)
