"""The wrapped model is an ordinary difflab denoiser: conditioning, guidance, every sampler and grid, errors."""

from __future__ import annotations

import pytest
import torch

import difflab
from difflab.guidance import classifier_free
from difflab.interop import DiffusersDenoiser, load_diffusers, schedule_from_config
from difflab.sampling import GRIDS, SAMPLERS
from difflab.utils.errors import DifflabError
from tests.interop.tiny import BETAS, diffusers, save, tiny_cond_unet, tiny_dit, tiny_unet


@pytest.fixture(scope="module")
def unet_denoiser():
    return DiffusersDenoiser(tiny_unet(), schedule_from_config(diffusers.DDPMScheduler(**BETAS)))


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - {"adaptive", "meanflow"}))
def test_every_sampler_runs_on_the_wrapped_model(unet_denoiser, name):
    out = difflab.sample(unet_denoiser, (2, 2, 8, 8), sampler=name, steps=3, schedule="trailing", seed=0)
    assert out.x.shape == (2, 2, 8, 8) and bool(torch.isfinite(out.x).all())


def test_meanflow_refuses_a_model_without_an_interval_input(unet_denoiser):
    """MeanFlow jumps need an average-velocity model; a plain one is refused by name, not run as Euler."""
    with pytest.raises(DifflabError, match="'interval' has no input on UNet2DModel"):
        difflab.sample(unet_denoiser, (2, 2, 8, 8), sampler="meanflow", steps=2, seed=0)


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_every_grid_runs_on_the_wrapped_model(unet_denoiser, grid):
    out = difflab.sample(unet_denoiser, (1, 2, 8, 8), sampler="dpmpp_2m", steps=4, schedule=grid, seed=0)
    assert bool(torch.isfinite(out.x).all())


def test_text_condition_and_guidance_pass_through(tmp_path):
    """CFG on the wrapped conditional UNet equals y_u + w (y_c - y_u) from the bare model, with the given
    null (empty-prompt) embedding in the unconditional rows."""
    model = tiny_cond_unet()
    null = torch.zeros(1, 3, 8)
    D = load_diffusers(save(tmp_path, model, diffusers.DDIMScheduler(**BETAS)), null_cond={"context": null})
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    t = torch.tensor([0.6, 0.6], dtype=torch.float64)
    guided = classifier_free(3.0)(D)(x, t, {"context": ctx})
    with torch.no_grad():
        tau = torch.tensor([599.0, 599.0])
        y_c = model(x, tau, encoder_hidden_states=ctx).sample
        y_u = model(x, tau, encoder_hidden_states=null.expand(2, 3, 8)).sample
    # float32 convolutions of a batch of 4 (CFG's one call) and of 2 differ by ~1e-6 with the thread count;
    # the guided term 3 (y_c - y_u) is > 3e-3 (below), so 1e-5 still tells a wrong weight or null apart
    torch.testing.assert_close(guided, y_u + 3.0 * (y_c - y_u), rtol=1e-4, atol=1e-5)
    assert (y_c - y_u).abs().max() > 1e-3  # the condition reaches the network


def test_class_labels_pass_through_and_learned_variance_is_dropped():
    model = tiny_dit()
    torch.nn.init.normal_(model.proj_out_2.weight, std=0.1)  # DiT zero-initialises its output layer
    D = DiffusersDenoiser(model, schedule_from_config(diffusers.DDPMScheduler(**BETAS)),
                          null_cond={"class_labels": torch.tensor([5])})
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.5, 0.5], dtype=torch.float64)
    a = D(x, t, {"class_labels": torch.tensor([0, 0])})
    b = D(x, t, {"class_labels": torch.tensor([3, 3])})
    assert a.shape == x.shape and (a - b).abs().max() > 1e-4
    null = D(x, t, {"class_labels": torch.tensor([0, 0]), "drop": torch.tensor([True, True])})
    torch.testing.assert_close(null, D(x, t, {"class_labels": torch.tensor([5, 5])}))


def test_clear_errors():
    D = DiffusersDenoiser(tiny_unet(), schedule_from_config(diffusers.DDPMScheduler(**BETAS)))
    x, t = torch.randn(1, 2, 8, 8), torch.tensor([0.5])
    with pytest.raises(DifflabError, match="'context' has no input on UNet2DModel"):
        D(x, t, {"context": torch.randn(1, 3, 8)})
    cond = tiny_cond_unet()
    C = DiffusersDenoiser(cond, schedule_from_config(diffusers.DDPMScheduler(**BETAS)))
    with pytest.raises(DifflabError, match="no learned null condition: pass null_cond"):
        C(x, t, {"context": torch.randn(1, 3, 8), "drop": torch.tensor([True])})
    with pytest.raises(DifflabError, match="zero-terminal-SNR"):
        schedule_from_config(diffusers.DDPMScheduler(**BETAS, rescale_betas_zero_snr=True))
    with pytest.raises(DifflabError, match="pass shift="):
        schedule_from_config(diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))


def test_loader_errors_and_offline_hub_id(tmp_path):
    with pytest.raises(DifflabError, match="not a diffusers folder"):
        load_diffusers(tmp_path)
    tiny_unet().save_pretrained(tmp_path / "m")
    with pytest.raises(DifflabError, match="no scheduler config"):
        load_diffusers(tmp_path / "m")
    pickled = tmp_path / "pickled"
    tiny_unet().save_pretrained(pickled, safe_serialization=False)  # diffusion_pytorch_model.bin: a pickle
    diffusers.DDIMScheduler(**BETAS).save_pretrained(pickled)
    with pytest.raises(DifflabError, match="difflab reads safetensors weights only"):
        load_diffusers(pickled)
    with pytest.raises(DifflabError, match="not in the Hugging Face cache and difflab never downloads"):
        load_diffusers("difflab-tests/never-cached-model")


def test_editing_tools_run_on_the_wrapped_model(unet_denoiser):
    """SDEdit keeps the input at strength 0 and changes it at 0.5; DDIM inversion and reconstruction run on
    the wrapped model (a random UNet: the round trip's accuracy is tests/editing's business, not this one)."""
    from difflab.editing import invert, reconstruct, sdedit

    x = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(sdedit(unet_denoiser, x, 0.0, steps=4, seed=0).x, x)
    edited = sdedit(unet_denoiser, x, 0.5, sampler="ddim", steps=4, schedule="trailing", seed=0)
    assert edited.x.shape == x.shape and (edited.x - x).abs().max() > 1e-3
    inv = invert(unet_denoiser, x.double(), sampler="ddim", steps=20, schedule="trailing")
    back = reconstruct(unet_denoiser, inv.x, inv.times, sampler="ddim")
    assert back.x.shape == x.shape and bool(torch.isfinite(back.x).all())
