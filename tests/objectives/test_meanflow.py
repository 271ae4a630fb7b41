"""MeanFlow against the closed-form average velocity of Gaussian data under rectified flow.

For x ~ N(mu, s^2 I) and z_t = (1 - t) x + t eps the probability-flow ODE moves every point affinely,
z_r = m_r + (sigma_r / sigma_t)(z_t - m_t) with m_t = (1 - t) mu and sigma_t^2 = (1 - t)^2 s^2 + t^2, so the
exact average velocity is u*(z, r, t) = (z - z_r) / (t - r) and, at r = t, the velocity
v*(z, t) = m_t' + (sigma_t' / sigma_t)(z - m_t).
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from difflab.cli.main import app
from difflab.config.factory import build_objective
from difflab.config.schema import ModelConfig, RunConfig
from difflab.nets.mlp import MLPNet
from difflab.nets.unet import UNet
from difflab.objectives import TimeSampler
from difflab.objectives.meanflow import MeanFlowLoss, average_velocity, meanflow_target
from difflab.param import NetworkDenoiser
from difflab.process import RectifiedFlow
from difflab.sampling import SAMPLERS, sample
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, read_log
from difflab.utils.errors import DifflabError
from tests.distill.test_cli import TINY, runner
from tests.distill.test_cli import _config as saved_config

f64 = torch.float64
MU, S = torch.tensor([1.0, -0.5], dtype=f64), 0.3


def _sigma(t):
    return torch.sqrt((1 - t) ** 2 * S**2 + t**2)


def _flow_to(z, t, r):
    """z_r from z_t along the exact ODE."""
    m = lambda s: (1 - s)[:, None] * MU  # noqa: E731
    return m(r) + (_sigma(r) / _sigma(t))[:, None] * (z - m(t))


def exact_u(z, r, t):
    """u*(z, r, t), with its r -> t limit v*(z, t) where r = t (module doc)."""
    gap = (t - r)[:, None]
    d_sigma = ((t - 1) * S**2 + t) / _sigma(t)
    v = -MU + (d_sigma / _sigma(t))[:, None] * (z - (1 - t)[:, None] * MU)
    jump = (z - _flow_to(z, t, r)) / torch.where(gap > 0, gap, torch.ones_like(gap))
    return torch.where(gap > 0, jump, v)


class ExactMeanFlow:
    """u* as a velocity denoiser reading cond["interval"] (absent: 0, the instantaneous velocity)."""

    parameterization, process = "velocity", RectifiedFlow()

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self, x, t, cond=None):
        interval = (cond or {}).get("interval", torch.zeros_like(t))
        return exact_u(x, t - interval, t) + self.offset


def _pairs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=f64)
    r = t * torch.rand(n, generator=g, dtype=f64)
    return torch.randn(n, 2, generator=g, dtype=f64), r, t


def test_the_target_of_the_exact_average_velocity_is_itself():
    """u* satisfies the MeanFlow identity: the target v* - (t - r) du*/dt (by JVP) equals u* to 1e-10; the
    identity with the wrong sign, v* + (t - r) du*/dt, is far from it."""
    z, r, t = _pairs()
    v = exact_u(z, t, t)
    u, target = meanflow_target(exact_u, z, r, t, v)
    torch.testing.assert_close(u, exact_u(z, r, t), rtol=0, atol=0)
    torch.testing.assert_close(target, u, rtol=1e-10, atol=1e-10)
    wrong = 2 * v - target  # v + (t - r) du/dt
    assert float((wrong - u).abs().max()) > 0.1
    u_same, target_same = meanflow_target(exact_u, z, t, t, v)  # r = t: flow matching's target v
    torch.testing.assert_close(target_same, v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_sampler_with_the_exact_average_velocity_is_the_exact_ode_map(steps):
    """z_0 = mu + s z_1 (the ODE map of N(mu, s^2)) from 1, 2 or 4 jumps, to 1e-12; NFE = steps."""
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=f64)
    out = sample(ExactMeanFlow(), z, sampler="meanflow", steps=steps, schedule="uniform", dtype=f64)
    torch.testing.assert_close(out.x, MU + S * z, rtol=0, atol=1e-12)
    assert out.nfe == steps


def test_the_sampler_on_a_denoiser_without_intervals_is_ddim():
    """A denoiser that ignores the interval (an exact mixture) makes the jumps Euler steps in t: DDIM on
    rectified flow, for an x0 denoiser too (read through its ODE velocity)."""
    from difflab.analysis.gaussian_mixture import ring_mixture

    for param in ("velocity", "x0"):
        D = ring_mixture().denoiser(RectifiedFlow(), param)
        z = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=f64)
        kw = dict(steps=5, schedule="uniform", schedule_options={"t_max": 0.999}, dtype=f64)
        torch.testing.assert_close(sample(D, z, sampler="meanflow", **kw).x, sample(D, z, sampler="ddim", **kw).x,
                                   rtol=1e-10, atol=1e-10)
    assert "meanflow" in SAMPLERS


def test_the_loss_is_zero_at_the_exact_model_and_the_adaptive_weight_of_an_offset():
    """With the exact velocity as teacher, the exact u* has loss 0 (both kinds of pairs); u* + delta has
    Delta = delta everywhere (a constant has no derivative), so the loss is delta^2 / (delta^2 + c)."""
    teacher = ExactMeanFlow()
    x0 = MU + S * torch.randn(512, 2, generator=torch.Generator().manual_seed(3), dtype=f64)
    loss = MeanFlowLoss(teacher, TimeSampler("logit_normal", mean=-0.4, std=1.0), ratio_r_neq_t=0.5, c=1e-3)
    g = torch.Generator().manual_seed(4)
    assert float(loss(ExactMeanFlow(), x0, generator=g).abs().max()) < 1e-20
    delta = 0.1
    got = loss(ExactMeanFlow(offset=delta), x0, generator=g)
    torch.testing.assert_close(got, torch.full_like(got, delta**2 / (delta**2 + 1e-3)), rtol=1e-9, atol=0)


def test_the_time_pairs():
    """r <= t always; r < t with probability ratio_r_neq_t (within 5 standard errors); t is the larger of two
    draws: P(t <= 1/2) = P(one draw <= 1/2)^2 = 1/4 for the uniform density."""
    n, ratio = 40000, 0.25
    r, t = MeanFlowLoss(None, TimeSampler("uniform"), ratio_r_neq_t=ratio).times(
        n, RectifiedFlow(), generator=torch.Generator().manual_seed(5))
    assert bool((r <= t).all())
    frac = float((r < t).double().mean())
    assert abs(frac - ratio) < 5 * math.sqrt(ratio * (1 - ratio) / n)
    assert abs(float((t <= 0.5).double().mean()) - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)


def test_the_interval_embedding_starts_at_zero_and_is_refused_where_it_is_not_built():
    torch.manual_seed(0)
    plain = UNet(in_channels=1, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                 image_size=8, num_heads=2)
    torch.manual_seed(0)
    with_interval = UNet(in_channels=1, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                         attention_resolutions=(4,), image_size=8, num_heads=2, interval_embedding=True)
    extra = set(with_interval.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("cond_embed.interval.") for k in extra)
    with_interval.load_state_dict(plain.state_dict(), strict=False)
    for p in plain.parameters():  # a trained-looking network, so a zero output would not hide anything
        torch.nn.init.normal_(p, std=0.05)
    with_interval.load_state_dict(plain.state_dict(), strict=False)
    x, c = torch.randn(3, 1, 8, 8), torch.tensor([100.0, 500.0, 900.0])
    same = with_interval(x, c, {"interval": torch.tensor([0.1, 0.5, 0.9])})
    torch.testing.assert_close(same, plain(x, c), rtol=0, atol=0)  # zero last layer: the flow itself
    with pytest.raises(DifflabError, match="built without an interval embedding.*interval_embedding=True"):
        plain(x, c, {"interval": torch.zeros(3)})
    with pytest.raises(DifflabError, match=r"cond\['interval'\] must have shape \(3,\)"):
        with_interval(x, c, {"interval": torch.zeros(2)})


def _mlp_model(seed=0, time_scale=1000.0):
    torch.manual_seed(seed)
    net = MLPNet(2, 64, 2, frequency_dim=32, interval_embedding=True)
    return NetworkDenoiser(net, RectifiedFlow(), "velocity", time_scale=time_scale)


def _train(ratio, out, steps=300, resume=False, log_every=50, teacher=None):
    data = TensorBatchDataset((MU + S * torch.randn(4096, 2, generator=torch.Generator().manual_seed(6),
                                                    dtype=f64)).float())
    cfg = TrainConfig(batch_size=256, max_steps=steps, log_every=log_every, ckpt_every=0, ema=64.0, lr=3e-3, seed=7,
                      warmup_steps=20)
    trainer = Trainer(_mlp_model(time_scale=1.0), MeanFlowLoss(teacher, TimeSampler("uniform"),
                                                 ratio_r_neq_t=ratio), data, cfg, out)
    trainer.train(resume=resume)
    return trainer.model


def test_a_trained_mlp_learns_the_one_step_jump(tmp_path):
    """An MLP (times on the scale 1: a high-frequency time embedding makes du/dt, and so the target, noisy)
    trained 300 steps on N(mu, 0.3^2 I) with MeanFlow's pairs: its u(z, 0, 1) within RMSE 0.24 of the exact
    u*(z, 0, 1) = (1 - s) z - mu (measured 0.196); trained on r = t only (flow matching) it learns v(z, 1) =
    z - mu instead, s |z| away (0.3 for the exact v; measured 0.335)."""
    z = torch.randn(2048, 2, generator=torch.Generator().manual_seed(8))
    zero, one = torch.zeros(2048), torch.ones(2048)
    exact = exact_u(z.double(), zero.double(), one.double()).float()

    def rmse(model):
        with torch.no_grad():
            return float((average_velocity(model, z, zero, one) - exact).square().mean().sqrt())

    meanflow, matching = _train(0.25, tmp_path / "mf"), _train(0.0, tmp_path / "fm")
    assert rmse(meanflow) < 0.24 < 0.28 < rmse(matching)


def test_the_teachers_velocity_lowers_the_error_of_the_same_training(tmp_path):
    """MeanFlow distillation (difflab.distill.meanflow): the same 300 steps with the exact marginal velocity v*
    in the target instead of the conditional x1 - x0 learn u(z, 0, 1) with a smaller error than from data
    (measured 0.067, against 0.196 from data)."""
    z = torch.randn(2048, 2, generator=torch.Generator().manual_seed(8))
    zero, one = torch.zeros(2048), torch.ones(2048)
    exact = exact_u(z.double(), zero.double(), one.double()).float()
    distilled = _train(0.25, tmp_path / "d", teacher=ExactMeanFlow())
    with torch.no_grad():
        err = float((average_velocity(distilled, z, zero, one) - exact).square().mean().sqrt())
    assert err < 0.1, err  # measured 0.067


def test_meanflow_resumes_bit_exactly_through_the_trainer(tmp_path):
    straight = _train(0.5, tmp_path / "a", steps=4, log_every=1)
    _train(0.5, tmp_path / "b", steps=2, log_every=1)
    resumed = _train(0.5, tmp_path / "b", steps=4, resume=True, log_every=1)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    losses = lambda out: [r["loss"] for r in read_log(os.path.join(out, "log.jsonl"))]  # noqa: E731
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_bad_setups_give_one_clear_message():
    with pytest.raises(DifflabError, match="set model.parameterization=velocity"):
        build_objective(RunConfig(model=ModelConfig(objective="meanflow", parameterization="eps")))
    with pytest.raises(DifflabError, match="meanflow has no option 'bogus'; its options are: c, p, ratio_r_neq_t"):
        build_objective(RunConfig(model=ModelConfig(objective="meanflow", parameterization="velocity",
                                                    objective_options={"bogus": 1})))
    with pytest.raises(DifflabError, match="ratio_r_neq_t is a probability"):
        MeanFlowLoss(ratio_r_neq_t=1.5)


def test_meanflow_from_scratch_by_set_then_sample(tmp_path):
    """--set model.objective=meanflow alone: the run's network gets its interval embedding and the run the
    meanflow sampler at the few steps TINY asks for (sample.steps=2; 20 would become 1); `difflab sample`
    draws in that many calls; a resume continues."""
    out = tmp_path / "mf"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(out), "--steps", "3", *TINY,
                            "--set", "model.objective=meanflow"])
    assert r.exit_code == 0, r.output
    cfg = saved_config(out)
    assert cfg["model"]["options"]["interval_embedding"] is True
    assert (cfg["sample"]["sampler"], cfg["sample"]["steps"]) == ("meanflow", 2)
    r = runner.invoke(app, ["sample", str(out), "--n", "8", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and "8 samples, 2 denoiser evaluations" in r.output, r.output
    r = runner.invoke(app, ["sample", str(out), "--n", "8", "--steps", "1", "--out", str(tmp_path / "s1.png")])
    assert r.exit_code == 0 and "8 samples, 1 denoiser evaluation)" in r.output, r.output
    r = runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", "1"])
    assert r.exit_code == 0 and "at step 4" in r.output, r.output
