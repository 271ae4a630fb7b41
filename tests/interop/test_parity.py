"""difflab's DDIM and DPM-Solver++(2M) on a wrapped diffusers UNet against diffusers' own schedulers.

Same tiny random UNet (saved to and loaded from a folder), same timesteps, same start noise: the samples
agree to 1e-5. The table read from the config is diffusers' alphas_cumprod bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from difflab.interop import load_diffusers, schedule_from_config
from difflab.sampling import SAMPLERS, make_grid
from tests.interop.tiny import BETAS, diffusers, save, tiny_unet

STEPS = 10


def run_diffusers(model, sched, z: torch.Tensor) -> torch.Tensor:
    x = z.clone()
    with torch.no_grad():
        for tau in sched.timesteps:
            x = sched.step(model(x, tau).sample, tau, x).prev_sample
    return x


def relative_gap(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|: float32 rounding of samples whose scale is ~10 (a random UNet's
    x0 estimates are large), so the gap is measured on the sample's own scale."""
    scale = float(theirs.abs().max())
    assert scale > 0.1  # not a trivial agreement at zero
    return float((ours - theirs).abs().max()) / scale


@pytest.fixture(scope="module")
def z():
    return torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_table_is_diffusers_alphas_cumprod_to_the_last_bit(beta_schedule):
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule)
    process = schedule_from_config(sched).process
    assert torch.equal(process.alphas_cumprod, sched.alphas_cumprod.to(torch.float64))
    assert torch.equal(process.alphas_cumprod.to(torch.float32), sched.alphas_cumprod)
    # and the continuous view hits the table at t = (tau + 1) / T: alpha^2 = alphabar_tau to rounding
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000
    torch.testing.assert_close(process.alpha(t) ** 2, process.alphas_cumprod, rtol=1e-14, atol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_ddim_matches_diffusers(tmp_path, z, prediction_type, spacing):
    sched = diffusers.DDIMScheduler(**BETAS, prediction_type=prediction_type, timestep_spacing=spacing,
                                    clip_sample=False, set_alpha_to_one=True)
    model = tiny_unet()
    D = load_diffusers(save(tmp_path, model, sched))
    assert D.parameterization == {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction_type]
    sched.set_timesteps(STEPS)
    ts = make_grid(D.process, spacing, STEPS)
    torch.testing.assert_close(D.schedule.time(sched.timesteps), ts[:-1], rtol=0, atol=0)
    with torch.no_grad():
        ours = SAMPLERS["ddim"](D, z, ts)
    theirs = run_diffusers(model, sched, z)
    assert relative_gap(ours, theirs) < 1e-5  # not a trivial agreement at zero


@pytest.mark.parametrize("spacing", ["trailing", "linspace", "leading"])
def test_dpmpp_2m_matches_diffusers(tmp_path, z, spacing):
    """Trailing: the named difflab grid is diffusers' grid. linspace / leading: DPMSolverMultistepScheduler
    spaces N + 1 points and drops the last (tau = linspace(0, T - 1, N + 1) or k (T // (N + 1))), unlike
    DDIM's spacings of the same names, so difflab runs on diffusers' timesteps passed as the grid."""
    sched = diffusers.DPMSolverMultistepScheduler(**BETAS, timestep_spacing=spacing, solver_order=2,
                                                  algorithm_type="dpmsolver++")
    model = tiny_unet(1)
    D = load_diffusers(save(tmp_path, model, sched))
    sched.set_timesteps(STEPS)
    ts = D.schedule.grid_from_timesteps(sched.timesteps)  # ends at t = 0: final_sigmas_type 'zero'
    if spacing == "trailing":
        torch.testing.assert_close(ts, make_grid(D.process, "trailing", STEPS), rtol=0, atol=0)
    with torch.no_grad():
        ours = SAMPLERS["dpmpp_2m"](D, z, ts)
    theirs = run_diffusers(model, sched, z)
    assert relative_gap(ours, theirs) < 1e-5


def test_flow_euler_matches_flow_match_euler(tmp_path):
    """SD3-style transformer: difflab's euler on the default grid (the config's shift, once) against
    FlowMatchEulerDiscreteScheduler given the unshifted sigmas linspace(1, 1/N, N), which it shifts once:
    the same grid, and Euler in t is DDIM on rectified flow, so the samples agree."""
    from tests.interop.tiny import tiny_sd3

    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    model = tiny_sd3()
    D = load_diffusers(save(tmp_path, model, sched))
    sched.set_timesteps(sigmas=torch.linspace(1, 1 / STEPS, STEPS).numpy())
    ts = D.default_grid(STEPS)
    torch.testing.assert_close(sched.sigmas.to(torch.float64), ts, rtol=1e-6, atol=1e-7)
    g = torch.Generator().manual_seed(3)
    z, ctx, pooled = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 3, 8, generator=g), torch.randn(2, 4, generator=g)
    with torch.no_grad():
        ours = SAMPLERS["euler"](D, z, ts, cond={"context": ctx, "pooled": pooled})
        x = z.clone()
        for tau in sched.timesteps:
            v = model(x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=tau.expand(2)).sample
            x = sched.step(v, tau, x).prev_sample
    assert relative_gap(ours, x) < 1e-5


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_dpmpp_2m_matches_diffusers_for_every_prediction_type(tmp_path, z, prediction_type):
    sched = diffusers.DPMSolverMultistepScheduler(**BETAS, timestep_spacing="trailing", prediction_type=prediction_type)
    model = tiny_unet(2)
    D = load_diffusers(save(tmp_path, model, sched))
    sched.set_timesteps(STEPS)
    with torch.no_grad():
        ours = SAMPLERS["dpmpp_2m"](D, z, make_grid(D.process, "trailing", STEPS))
    assert relative_gap(ours, run_diffusers(model, sched, z)) < 1e-5


def test_fractional_timesteps_mean_diffusers_noise_levels():
    """Off the table, the network's tau = T t - 1 has the noise level diffusers assigns to a fractional
    timestep (log sigma~ linear in tau between table entries, `_sigma_to_t`), for any t in [1/T, 1]."""
    import numpy as np

    sched = diffusers.DPMSolverMultistepScheduler(**BETAS)
    S = schedule_from_config(sched)
    abar = sched.alphas_cumprod.to(torch.float64).numpy()
    log_sigma = 0.5 * (np.log1p(-abar) - np.log(abar))  # log sigma~ at tau = 0..T-1
    t = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.999 + 0.001
    tau = S.timestep(t).numpy()
    theirs = np.interp(tau, np.arange(1000), log_sigma)
    ours = (S.process.sigma(t) / S.process.alpha(t)).log().numpy()
    assert np.abs(ours - theirs).max() < 1e-12
