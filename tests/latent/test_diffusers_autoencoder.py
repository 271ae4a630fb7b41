"""The diffusers AutoencoderKL adapter (difflab.interop.autoencoder) on a tiny model the test saves itself."""

from __future__ import annotations

import json

import pytest
import torch

from difflab.interop.autoencoder import load_diffusers_autoencoder
from difflab.utils.errors import DifflabError
from tests.latent.tiny_ae import save_autoencoder, tiny_autoencoder


def test_adapter_matches_diffusers_encode_decode_and_scale(tmp_path):
    folder = save_autoencoder(tmp_path / "vae", shift_factor=0.25)
    ae = load_diffusers_autoencoder(folder)
    ref = tiny_autoencoder(shift_factor=0.25)
    assert (ae.factor, ae.latent_channels, ae.latent_scale) == (4, 4, 0.5)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        mean = ref.encode(x).latent_dist.mean
        z = ae.to_latent(x)
        assert z.shape == (2, 4, 8, 8)
        # diffusers' own convention for a latent: (mean - shift_factor) * scaling_factor
        torch.testing.assert_close(z, (mean - 0.25) * 0.5, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ae.from_latent(z), ref.decode(mean).sample, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in ae.parameters()) and not ae.training


def test_fingerprint_identifies_the_weights(tmp_path):
    a = load_diffusers_autoencoder(save_autoencoder(tmp_path / "a", seed=0))
    a2 = load_diffusers_autoencoder(save_autoencoder(tmp_path / "a2", seed=0))
    b = load_diffusers_autoencoder(save_autoencoder(tmp_path / "b", seed=1))
    assert len(a.fingerprint) == 64
    assert a.fingerprint == a2.fingerprint != b.fingerprint


def test_pipeline_folder_uses_its_vae(tmp_path):
    save_autoencoder(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert load_diffusers_autoencoder(tmp_path / "pipe").factor == 4


def test_bad_sources_are_one_message_each(tmp_path):
    with pytest.raises(DifflabError, match="no autoencoder folder"):
        load_diffusers_autoencoder(tmp_path / "missing")
    with pytest.raises(DifflabError, match="not in the Hugging Face cache"):
        load_diffusers_autoencoder("nobody-xyz/no-such-vae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DifflabError, match="not a diffusers autoencoder folder"):
        load_diffusers_autoencoder(tmp_path / "empty")
    folder = save_autoencoder(tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(DifflabError, match="not an AutoencoderKL"):
        load_diffusers_autoencoder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DifflabError, match="cannot load the autoencoder"):
        load_diffusers_autoencoder(folder)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(DifflabError, match="safetensors weights only"):
        load_diffusers_autoencoder(folder)
