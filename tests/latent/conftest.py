"""A tiny text-to-image latent run shared by the latent tests: shapes captions, the tiny diffusers AutoencoderKL
(f = 4, 4 channels: 4x8x8 latents), a U-Net of 8 base channels, trained 2 steps."""

from __future__ import annotations

import pytest

from tests.latent.tiny_ae import save_autoencoder, train


@pytest.fixture(scope="session")
def latent_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    ae = save_autoencoder(root / "ae")
    r = train(root / "run", ae)
    assert r.exit_code == 0, r.output
    return root / "run", ae
