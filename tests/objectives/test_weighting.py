"""Every loss weighting against its written formula in the space where its paper writes it, and the
checks on its options (an unknown or bad option is refused; edm follows the preconditioner's sigma_data)."""

import pytest
import torch

from difflab.objectives import DiffusionLoss, TimeSampler
from difflab.objectives.weighting import WEIGHTING_NAMES, weighting_options
from difflab.param import EDMDenoiser, NetworkDenoiser
from difflab.process import VESDE, VPSDE, DiscreteVP
from difflab.utils.errors import DifflabError
from tests.objectives.fixed_net import Fixed

f64 = torch.float64


def replay(process, x0, seed):
    """The (t, eps) DiffusionLoss draws from a generator seeded with `seed` (time first, then noise)."""
    g = torch.Generator().manual_seed(seed)
    t = TimeSampler()(x0.shape[0], process, generator=g)
    return t, torch.randn(x0.shape, generator=g, dtype=x0.dtype)


def eps_model_loss(process, weighting, **kw):
    """(weighted loss, t, per-sample eps-MSE ||eps - eps_theta||^2) for an eps-predicting network."""
    x0, pred = torch.randn(64, 3, dtype=f64), torch.randn(64, 3, dtype=f64)
    model = NetworkDenoiser(Fixed(pred), process, "eps")
    loss = DiffusionLoss(weighting=weighting, **kw)(model, x0, generator=torch.Generator().manual_seed(4))
    t, eps = replay(process, x0, 4)
    return loss, t, (eps - pred).square().mean(1)


@pytest.mark.parametrize("process", [DiscreteVP(T=100), VPSDE()], ids=["ddpm", "vpsde"])
@pytest.mark.parametrize("weighting", ["snr", "sigma2"])
def test_snr_weighting_is_l_simple(process, weighting):
    """Ho et al. 2020 / seed 001: w_x0 = SNR on an eps network is the unweighted ||eps - eps_theta||^2
    (seed 001's lambda = sigma^2 in lambda / sigma^2 ||eps - eps_theta||^2 is the same)."""
    loss, _, eps_mse = eps_model_loss(process, weighting)
    torch.testing.assert_close(loss, eps_mse, rtol=1e-12, atol=0)


def test_min_snr_weighting_of_hang_et_al():
    """Hang et al. 2023 eq. (the eps form): w_eps = min(SNR, gamma) / SNR, here with gamma = 2."""
    p = VPSDE()
    loss, t, eps_mse = eps_model_loss(p, "min_snr", gamma=2.0)
    a2 = torch.exp(-0.5 * t**2 * (p.beta_max - p.beta_min) - t * p.beta_min)  # VP-SDE alphabar(t)
    snr = a2 / (1 - a2)
    torch.testing.assert_close(loss, torch.clamp(snr, max=2.0) / snr * eps_mse, rtol=1e-10, atol=0)
    assert bool((snr > 2).any() and (snr < 2).any())  # both branches of the min are exercised


def test_likelihood_weighting_of_song_et_al():
    """Song et al. 2021 (maximum-likelihood training): lambda = g^2 on the score error
    ||s_theta - grad log q||^2 = ||eps - eps_theta||^2 / sigma^2, with g^2 = beta(t) for the VP-SDE."""
    p = VPSDE()
    loss, t, eps_mse = eps_model_loss(p, "likelihood")
    beta_t = p.beta_min + t * (p.beta_max - p.beta_min)
    sigma2 = 1 - torch.exp(-0.5 * t**2 * (p.beta_max - p.beta_min) - t * p.beta_min)
    torch.testing.assert_close(loss, beta_t / sigma2 * eps_mse, rtol=1e-10, atol=0)


def test_snr_weighting_on_v_prediction_is_alpha_squared():
    """On a VP process an x0 error d is a v error of -d / sigma, so SNR ||d||^2 = alpha^2 ||v - v_theta||^2."""
    p = DiscreteVP(T=100)
    x0, pred = torch.randn(64, 3, dtype=f64), torch.randn(64, 3, dtype=f64)
    model = NetworkDenoiser(Fixed(pred), p, "v")
    loss = DiffusionLoss(weighting="snr")(model, x0, generator=torch.Generator().manual_seed(2))
    t, eps = replay(p, x0, 2)
    abar = p.alphas_cumprod[(t * 100).round().long() - 1][:, None]
    v = abar.sqrt() * eps - (1 - abar).sqrt() * x0  # Salimans & Ho 2022
    torch.testing.assert_close(loss, abar[:, 0] * (v - pred).square().mean(1), rtol=1e-10, atol=0)


def test_edm_weighting_of_karras_et_al_on_ve():
    """Karras et al. 2022 eq. 8 on VE (alpha = 1): lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 on ||D - x0||^2."""
    p = VESDE()
    x0, pred = torch.randn(64, 3, dtype=f64), torch.randn(64, 3, dtype=f64)
    model = NetworkDenoiser(Fixed(pred), p, "x0")
    loss = DiffusionLoss(weighting="edm", sigma_data=0.7)(model, x0, generator=torch.Generator().manual_seed(3))
    t, _ = replay(p, x0, 3)
    sigma = p.sigma_min * (p.sigma_max / p.sigma_min) ** t
    lam = (sigma**2 + 0.49) / (sigma * 0.7) ** 2
    torch.testing.assert_close(loss, lam * (x0 - pred).square().mean(1), rtol=1e-10, atol=0)


@pytest.mark.parametrize("process", [VESDE(), VPSDE()], ids=["ve", "vpsde"])
def test_edm_weighting_with_the_preconditioner_is_unit_weight_on_F(process):
    """Karras et al. sec. 5: lambda c_out^2 = 1, so the weighted loss is ||F_theta - F_target||^2 with
    F_target = (x0 - c_skip x~) / c_out. The weighting must read sigma_data = 0.3 from the denoiser."""
    sd = 0.3
    x0, F = torch.randn(64, 3, dtype=f64), torch.randn(64, 3, dtype=f64)
    model = EDMDenoiser(Fixed(F), process, sigma_data=sd)
    loss = DiffusionLoss(weighting="edm")(model, x0, generator=torch.Generator().manual_seed(6))
    t, eps = replay(process, x0, 6)
    s = (process.sigma(t) / process.alpha(t))[:, None]
    x_s = x0 + s * eps  # EDM's scaled variable x~
    c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt()
    F_target = (x0 - c_skip * x_s) / c_out
    torch.testing.assert_close(loss, (F - F_target).square().mean(1), rtol=1e-8, atol=0)


def test_edm_sigma_data_that_disagrees_with_the_preconditioner_is_refused():
    model = EDMDenoiser(Fixed(torch.zeros(2, 3)), VESDE(), sigma_data=0.3)
    loss = DiffusionLoss(weighting="edm", sigma_data=0.5)
    with pytest.raises(DifflabError, match="disagrees with the model's preconditioner sigma_data=0.3"):
        loss(model, torch.zeros(2, 3))
    DiffusionLoss(weighting="edm", sigma_data=0.3)(model, torch.zeros(2, 3))  # the same value is fine


def test_factory_passes_the_model_sigma_data_to_the_edm_weighting():
    from difflab.config.factory import build_loss
    from difflab.config.schema import LossConfig, ModelConfig

    loss = build_loss(LossConfig(weighting="edm"), ModelConfig(sigma_data=0.25))
    assert loss.weighting_kw == {"sigma_data": 0.25}
    assert build_loss(LossConfig(weighting="min_snr", gamma=3.0)).weighting_kw == {"gamma": 3.0}


@pytest.mark.parametrize(("weighting", "kw", "message"), [
    ("min_snr", {"gama": 3}, "unknown option 'gama' for weighting 'min_snr'; its options are: gamma"),
    ("snr", {"gamma": 3}, "unknown option 'gamma' for weighting 'snr'; its options are: none"),
    ("uniform", {"sigma_data": 0.5}, "its options are: none"),
    ("edm", {"sigma_dat": 0.5}, "its options are: sigma_data"),
    ("min_snr", {"gamma": -1}, "option gamma must be a positive number; got -1"),
    ("edm", {"sigma_data": "x"}, "option sigma_data must be a positive number; got 'x'"),
    ("edm", {"sigma_data": float("inf")}, "must be a positive number"),
])
def test_bad_weighting_options_are_refused_with_the_valid_list(weighting, kw, message):
    with pytest.raises(DifflabError) as err:
        DiffusionLoss(weighting=weighting, **kw)
    assert message in str(err.value)


def test_every_weighting_lists_its_options():
    assert {w: weighting_options(w) for w in WEIGHTING_NAMES} == {
        "uniform": {}, "snr": {}, "sigma2": {}, "min_snr": {"gamma": 5.0}, "likelihood": {}, "edm": {"sigma_data": 0.5}}
