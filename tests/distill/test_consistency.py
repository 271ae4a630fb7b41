"""Consistency models against closed forms and the exact Gaussian-mixture teacher on the 2-D ring."""

from __future__ import annotations

import math
import os

import pytest
import torch

from difflab.analysis.gaussian_mixture import ring_mixture
from difflab.cli.main import app
from difflab.config.factory import build_objective
from difflab.config.schema import ModelConfig, RunConfig
from difflab.distill.consistency import (
    ConsistencyLoss,
    ConsistencyObjective,
    curriculum_steps,
    ect_partner,
    ect_stage,
    karras_sigmas,
    lognormal_probabilities,
    pseudo_huber,
    sigma_to_t,
    teacher_step,
)
from difflab.distill.registry import DISTILL_METHODS
from difflab.nets.mlp import MLPNet
from difflab.param import EDMDenoiser, NetworkDenoiser
from difflab.param.consistency import ConsistencyDenoiser
from difflab.process import VESDE, VPSDE, RectifiedFlow
from difflab.sampling import heun, probability_flow
from difflab.sampling.edm import euler
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, read_log
from difflab.utils.errors import DifflabError
from tests.distill.test_cli import TINY, runner, sample_eval_resume
from tests.distill.test_cli import _config as saved_config

f64 = torch.float64
RING = ring_mixture()
PROCESSES = [VESDE(), VPSDE(), RectifiedFlow()]


def _rmse(a, b) -> float:
    return float((a - b).square().sum(1).mean().sqrt())


def _student(process, seed: int = 0, hidden: int = 64) -> ConsistencyDenoiser:
    torch.manual_seed(seed)
    return ConsistencyDenoiser(NetworkDenoiser(MLPNet(2, hidden, 2, frequency_dim=32), process, "velocity"))


# ---- the boundary-condition preconditioning ---------------------------------------------------------------
@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.name)
def test_boundary_condition_holds_exactly(process):
    """f(x, t_min) = x / alpha(t_min) (= x on VE) to 1e-12 in float64, whatever the inner denoiser says."""
    f = ConsistencyDenoiser(RING.denoiser(process, "v"))
    t_min = f.t_min()
    assert float(process.sigma(torch.tensor(t_min, dtype=f64)) / process.alpha(torch.tensor(t_min, dtype=f64))) \
        == pytest.approx(0.002, rel=1e-12)
    x = 3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    out = f(x, torch.full((64,), t_min, dtype=f64))
    alpha = process.alpha(torch.tensor(t_min, dtype=f64))
    torch.testing.assert_close(out, x / alpha, rtol=0, atol=1e-12)
    if process.name == "ve":
        torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    later = f(x, torch.full((64,), 0.5, dtype=f64))  # away from the boundary f is the denoiser's business
    assert float((later - x / process.alpha(torch.tensor(0.5, dtype=f64))).abs().max()) > 0.1


def test_the_implied_network_output_is_edms_and_the_coefficients_are_song_et_als():
    """Around an EDM-preconditioned network F: f = c_skip x~ + c_out F(c_in x~, c_noise) with Song et al.'s
    c_skip = sd^2 / ((s - s_min)^2 + sd^2), c_out = sd (s - s_min) / sqrt(sd^2 + s^2), computed here by hand."""
    process = VPSDE()
    torch.manual_seed(0)
    net = MLPNet(2, 16, 1, frequency_dim=8).double()
    torch.nn.init.normal_(net.out_proj.weight, std=0.5)
    f = ConsistencyDenoiser(EDMDenoiser(net, process))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=f64)
    t = torch.linspace(0.05, 0.95, 32, dtype=f64)
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    s, sd, s_min = sigma / alpha, 0.5, 0.002
    x_s = x / alpha
    F = net(x_s / torch.sqrt(s**2 + sd**2), (torch.log(s) / 4).flatten())
    c_skip = sd**2 / ((s - s_min) ** 2 + sd**2)
    c_out = sd * (s - s_min) / torch.sqrt(sd**2 + s**2)
    torch.testing.assert_close(f(x, t), c_skip * x_s + c_out * F, rtol=1e-12, atol=1e-12)


def test_a_student_loads_the_teachers_state_dict_as_saved():
    teacher = NetworkDenoiser(MLPNet(2, 8, 1, frequency_dim=8), RectifiedFlow(), "velocity")
    student = _student(RectifiedFlow(), hidden=8)
    student.denoiser.net = MLPNet(2, 8, 1, frequency_dim=8)
    student.load_state_dict(teacher.state_dict())
    for a, b in zip(student.denoiser.state_dict().values(), teacher.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    student.load_state_dict(student.state_dict())  # its own (checkpoint) keys load as usual


# ---- the recipe's pieces -----------------------------------------------------------------------------------
def test_pseudo_huber_against_its_formula():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=f64)
    y = torch.zeros(2, 2, dtype=f64)
    c = 0.00054 * math.sqrt(2)
    torch.testing.assert_close(pseudo_huber(x, y), torch.tensor([math.sqrt(25 + c**2) - c, 0.0], dtype=f64))
    torch.testing.assert_close(pseudo_huber(x, y, c=1.0), torch.tensor([math.sqrt(26) - 1, 0.0], dtype=f64))
    small = torch.full((1, 2), 1e-6, dtype=f64)  # quadratic near 0: ||d||^2 / (2c)
    assert float(pseudo_huber(small, torch.zeros_like(small))) == pytest.approx(2e-12 / (2 * c), rel=1e-6)
    images = torch.ones(1, 1, 8, 8, dtype=f64)  # c = 0.00054 sqrt(64) for an 8x8 image
    assert float(pseudo_huber(images, 0 * images)) == pytest.approx(math.sqrt(64 + 0.00432**2) - 0.00432)


def test_curriculum_values():
    """iCT's N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2 floor(s1/s0) + 1)): K = 400k."""
    K = 400_000  # K' = 50_000
    assert [curriculum_steps(k, K) for k in (0, 49_999, 50_000, 100_000, 150_000, 300_000, 350_000, 399_999)] == \
        [11, 11, 21, 41, 81, 641, 1281, 1281]
    assert [curriculum_steps(k, 8, s0=2, s1=8) for k in range(8)] == [3, 3, 5, 5, 9, 9, 9, 9]  # K' = 2


def test_karras_levels_and_lognormal_index_probabilities():
    s = karras_sigmas(11, 0.002, 80.0, 7.0)
    assert float(s[0]) == pytest.approx(0.002, rel=1e-12) and float(s[-1]) == pytest.approx(80.0, rel=1e-12)
    assert bool((s[1:] > s[:-1]).all())
    p = lognormal_probabilities(s, -1.1, 2.0)
    from scipy.stats import norm

    mass = norm.cdf((torch.log(s[1:]).numpy() + 1.1) / 2) - norm.cdf((torch.log(s[:-1]).numpy() + 1.1) / 2)
    torch.testing.assert_close(p, torch.as_tensor(mass / mass.sum()), rtol=1e-10, atol=1e-12)


# ---- the targets: one teacher ODE step (CD), the same noise at two levels (CT) --------------------------------
@pytest.mark.parametrize("process", [VPSDE(), RectifiedFlow()], ids=lambda p: p.name)
@pytest.mark.parametrize(("solver", "sampler"), [("heun", heun), ("euler", euler)])
def test_teacher_step_is_the_libraries_ode_step_per_sample(process, solver, sampler):
    """Per-sample times: each row equals the sampler's one step on its own two-point grid (1e-12)."""
    teacher = RING.denoiser(process, "v")
    g = torch.Generator().manual_seed(0)
    t_next = torch.tensor([0.9, 0.5, 0.2, 0.05], dtype=f64)
    t = torch.tensor([0.95, 0.7, 0.3, 0.1], dtype=f64)
    x = process.sample_xt(RING.sample(4, generator=g)[0], t, torch.randn(4, 2, generator=g, dtype=f64))
    out = teacher_step(teacher, x, t, t_next, solver=solver)
    for i in range(4):
        one = sampler(teacher, x[i : i + 1], [float(t[i]), float(t_next[i])])
        torch.testing.assert_close(out[i : i + 1], one, rtol=1e-12, atol=1e-12)


class Recorder(torch.nn.Module):
    """An x0 'consistency function' that records its inputs (the target network's view of x^_n)."""

    parameterization = "x0"

    def __init__(self, process):
        super().__init__()
        self.process, self.seen = process, []

    def forward(self, x, t, cond=None):
        self.seen.append((x.detach().clone(), t.detach().clone()))
        return x


def test_cd_target_is_one_teacher_heun_step_and_ct_target_shares_the_noise():
    process = RectifiedFlow()
    teacher = RING.denoiser(process, "v")
    x0 = RING.sample(16, generator=torch.Generator().manual_seed(3))[0]
    model = Recorder(process)
    cd = ConsistencyLoss(teacher, steps=18, noise="uniform", weighting="uniform")
    cd.target = Recorder(process)
    cd(model, x0, generator=torch.Generator().manual_seed(0))
    (x_next, t_next), = model.seen
    (x_hat, t_n), = cd.target.seen
    assert bool((t_n < t_next).all())
    torch.testing.assert_close(x_hat, teacher_step(teacher, x_next, t_next, t_n, solver="heun"), rtol=0, atol=0)
    # the step is between neighbouring levels of the N = 18 Karras grid
    levels = karras_sigmas(18)
    s_n, s_next = (process.sigma(v) / process.alpha(v) for v in (t_n, t_next))
    idx = torch.searchsorted(levels, s_n.cpu() * (1 - 1e-9))
    torch.testing.assert_close(s_next, levels[idx + 1], rtol=1e-9, atol=0)

    ct = ConsistencyLoss(None, total_steps=100)
    model = Recorder(process)
    ct(model, x0, generator=torch.Generator().manual_seed(0))
    (x_n, t_n), (x_next, t_next) = model.seen  # stop-grad target: the same network (its no-grad call first)
    z_next = (x_next / process.alpha(t_next)[:, None] - x0) / (process.sigma(t_next) / process.alpha(t_next))[:, None]
    z_n = (x_n / process.alpha(t_n)[:, None] - x0) / (process.sigma(t_n) / process.alpha(t_n))[:, None]
    torch.testing.assert_close(z_n, z_next, rtol=1e-9, atol=1e-9)
    assert curriculum_steps(0, 100) == 11 and bool((t_n < t_next).all())


def test_ct_target_and_trained_call_share_their_dropout_masks():
    """The stop-grad target is the trained network itself: both calls draw the same global random numbers (ECT's
    shared dropout mask), so dropout adds no spurious difference between f(x_{n+1}) and sg f(x^_n)."""
    class Draws(Recorder):
        def forward(self, x, t, cond=None):
            self.seen.append(torch.rand(3))
            return x

    x0 = torch.zeros(8, 2, dtype=f64)
    for schedule in ("ict", "ect"):
        model = Draws(RectifiedFlow())
        ConsistencyLoss(None, total_steps=10, schedule=schedule)(model, x0, generator=torch.Generator().manual_seed(0))
        target_draw, trained_draw = model.seen
        assert torch.equal(target_draw, trained_draw)
    assert not torch.equal(torch.rand(3), trained_draw)  # the stream moves on after the pair


def test_the_loss_is_the_weighted_pseudo_huber_distance_of_the_two_outputs():
    """With f = identity, d(x_{n+1}, x_n) is computable: lambda(s_n) (sqrt(||(s_{n+1} - s_n) z||^2 + c^2) - c)."""
    process = VESDE()
    x0 = torch.zeros(256, 2, dtype=f64)
    loss = ConsistencyLoss(None, total_steps=10)(Recorder(process), x0, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    sig = karras_sigmas(11)
    n = torch.multinomial(lognormal_probabilities(sig), 256, replacement=True, generator=g)
    z = torch.randn(256, 2, generator=g, dtype=f64)
    gap = (sig[n + 1] - sig[n])[:, None]
    c = 0.00054 * math.sqrt(2)
    torch.testing.assert_close(loss, (torch.sqrt((gap * z).square().sum(1) + c**2) - c) / gap[:, 0])


# ---- ECT's continuous schedule -----------------------------------------------------------------------------
def test_ect_mapping_and_stages_match_the_formula():
    """sigma_r = max(0, sigma_t (1 - (1 + k sigmoid(-b sigma_t)) / q^(a + 1))), a = floor(k_step stages / K) held
    at stages - 1, against values worked by hand with math (q = 2, k = 8, b = 1)."""
    s_t = torch.tensor([0.5, 1.0, 3.0, 10.0, 80.0], dtype=f64)
    for stage in (0, 3):
        expected = [max(0.0, s * (1 - (1 + 8 / (1 + math.exp(s))) / 2 ** (stage + 1))) for s in s_t.tolist()]
        torch.testing.assert_close(ect_partner(s_t, stage), torch.tensor(expected, dtype=f64), rtol=1e-14, atol=0)
    assert ect_partner(s_t, 0)[:2].tolist() == [0.0, 0.0]  # stage 0: low noise regresses on x0 (r = 0)
    assert ect_partner(s_t, 0)[4] == pytest.approx(40.0, rel=1e-12)  # and sigma_r = sigma_t / 2 far out
    assert [ect_stage(k, 1000, 8) for k in (0, 124, 125, 500, 999, 5000)] == [0, 0, 1, 4, 7, 7]


def test_ect_loss_is_the_weighted_distance_to_the_shared_noise_pair_with_x0_at_the_boundary():
    """With f = identity on VE (x~ = x), every term is computable: sigma_t ~ lognormal(-1.1, 2) clipped to
    [0.002, 80], sigma_r from the mapping at the stage of k, the same z at both levels, x0 the target where
    sigma_r < 0.002; loss = (sqrt(||x_t - target||^2 + c^2) - c) / (sigma_t - sigma_r)."""
    process, batch = VESDE(), 512
    x0 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(9), dtype=f64)
    for k, stage in ((0, 0), (60, 4)):
        loss_fn = ConsistencyLoss(None, total_steps=100, schedule="ect", stages=8)
        loss_fn.k = k
        loss = loss_fn(Recorder(process), x0, generator=torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(0)
        s_t = (-1.1 + 2.0 * torch.randn(batch, generator=g, dtype=f64)).exp().clamp(0.002, 80.0)
        z = torch.randn(batch, 2, generator=g, dtype=f64)
        s_r = torch.tensor([max(0.0, s * (1 - (1 + 8 / (1 + math.exp(s))) / 2 ** (stage + 1))) for s in s_t.tolist()],
                           dtype=f64)
        target = torch.where((s_r < 0.002)[:, None], x0, x0 + s_r[:, None] * z)
        c = 0.00054 * math.sqrt(2)
        expected = (torch.sqrt((x0 + s_t[:, None] * z - target).square().sum(1) + c**2) - c) / (s_t - s_r)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
        # the share regressed on x0: sigma_t <= ln 7 at stage 0 (8 sigmoid(-s) >= 1); at stage 4 only sigma_t
        # below 0.002 / (1 - 9/32) (the mapping's largest shrink, near s = 0), within 4 binomial sd
        edge = math.log(7.0) if stage == 0 else 0.002 / (1 - 9 / 32)
        p = 0.5 * (1 + math.erf((math.log(edge) + 1.1) / (2.0 * math.sqrt(2))))
        assert float((s_r < 0.002).double().mean()) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / batch))
    scratch, _ = build_objective(RunConfig(model=ModelConfig(  # --set model.objective_options.schedule=ect
        objective="consistency_training", preconditioning="consistency",
        objective_options={"schedule": "ect", "stages": 2, "total_steps": 10})))
    assert (scratch.schedule, scratch.stages, scratch.total_steps, scratch.teacher) == ("ect", 2, 10, None)


def test_ect_fitted_mlp_maps_xt_to_the_exact_ode_endpoint():
    """Consistency training from ring samples alone on ECT's schedule (600 steps of 128, 4 stages, sigma~ <= 5,
    l2, stop-grad target; no teacher anywhere in training): the RMSE of the fitted MLP to the adaptive exact-ODE
    endpoint from x_t ~ p_t is below 0.55 at sigma~ = 1 and 3 (measured 0.39 and 0.49), where the identity map
    is off by 0.84 and 2.84 and, at sigma~ = 3, the posterior mean E[x0 | x_t] by 1.26."""
    process = RectifiedFlow()
    teacher = RING.denoiser(process, "velocity")  # only to score the fit
    f = _student(process)
    loss = ConsistencyLoss(None, total_steps=600, schedule="ect", stages=4, sigma_max=5.0, metric="l2")
    opt = torch.optim.Adam(f.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for k in range(600):
        loss.k = k
        value = loss(f, RING.sample(128, generator=g)[0].float(), generator=g).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    ge = torch.Generator().manual_seed(1)
    for s in (1.0, 3.0):
        t = float(sigma_to_t(process, torch.tensor(s)))
        tb = torch.full((400,), t, dtype=f64)
        x_t = process.sample_xt(RING.sample(400, generator=ge)[0], tb, torch.randn(400, 2, generator=ge, dtype=f64))
        endpoint = probability_flow(teacher, x_t, [t, 0.0], rtol=1e-8, atol=1e-8)
        with torch.no_grad():
            fitted = f(x_t.float(), tb.float()).double()
        assert _rmse(fitted, endpoint) < 0.55
        assert _rmse(x_t / (1 - t), endpoint) > 1.5 * _rmse(fitted, endpoint)  # two-sided: identity is far off
    assert _rmse(teacher.exact(x_t, tb).x0, endpoint) > 2 * _rmse(fitted, endpoint)  # s = 3: no mere denoiser


# ---- a consistency function fitted by CD maps x_t to the exact ODE endpoint ---------------------------------
def test_cd_fitted_mlp_maps_xt_to_the_exact_ode_endpoint():
    """An MLP consistency function distilled (CD, Heun teacher steps of the exact ring denoiser, N = 18, EMA
    target mu = 0.9, sigma~ <= 5) for 120 steps of 128: its RMSE to the adaptive exact-ODE endpoint from x_t ~ p_t
    is below 0.45 at sigma~ = 1 and 3 (measured 0.34 and 0.38), where the identity map x~ is off by 0.84 and
    2.84 and the posterior mean E[x0 | x_t] (the best one-step denoiser, not an ODE map) by 0.42 and 1.26."""
    process = RectifiedFlow()
    teacher = RING.denoiser(process, "velocity")
    f = _student(process)
    untrained = _student(process)
    target = _student(process)
    target.load_state_dict(f.state_dict())
    loss = ConsistencyLoss(teacher, steps=18, sigma_max=5.0, noise="uniform", weighting="uniform", metric="l2")
    loss.target = target.requires_grad_(False)
    opt = torch.optim.Adam(f.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        x0 = RING.sample(128, generator=g)[0].float()
        value = loss(f, x0, generator=g).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(f.parameters()), 0.1)
    ge = torch.Generator().manual_seed(1)
    for s, bound in ((1.0, 0.45), (3.0, 0.45)):
        t = float(sigma_to_t(process, torch.tensor(s)))
        tb = torch.full((400,), t, dtype=f64)
        x_t = process.sample_xt(RING.sample(400, generator=ge)[0], tb, torch.randn(400, 2, generator=ge, dtype=f64))
        endpoint = probability_flow(teacher, x_t, [t, 0.0], rtol=1e-8, atol=1e-8)
        with torch.no_grad():
            fitted, start = (m(x_t.float(), tb.float()).double() for m in (f, untrained))
        assert _rmse(fitted, endpoint) < bound
        assert _rmse(x_t / (1 - t), endpoint) > 1.8 * bound  # two-sided: the identity map is far off
        assert _rmse(start, endpoint) > bound  # and so is the student before distillation
    assert _rmse(teacher.exact(x_t, tb).x0, endpoint) > 2 * _rmse(fitted, endpoint)  # s = 3: no mere denoiser


# ---- objectives through the Trainer ------------------------------------------------------------------------
def _config(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=6, log_every=1, ckpt_every=0, ema=64.0, lr=1e-2, seed=7)
    return TrainConfig(**{**base, **kw})


def _data() -> TensorBatchDataset:
    return TensorBatchDataset(RING.sample(64, generator=torch.Generator().manual_seed(0))[0].float())


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


def _losses(out) -> list[float]:
    return [r["loss"] for r in read_log(os.path.join(out, "log.jsonl"))]


def test_ct_objective_resumes_bit_exactly_through_the_trainer(tmp_path):
    """Consistency training with a curriculum that changes N at the resume point (K = 6, s0 = 2, s1 = 8):
    4 steps straight = 2 steps, then a resumed run to 4; weights, curriculum step and losses agree."""
    def run(out, steps, resume=False, seed=0):
        loss = ConsistencyLoss(None, total_steps=6, s0=2, s1=8)
        trainer = Trainer(_student(RectifiedFlow(), seed=seed, hidden=16), loss, _data(), _config(max_steps=steps),
                          out, objective=ConsistencyObjective)
        trainer.train(resume=resume)
        return trainer

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume=True, seed=5)
    _same(resumed.model, straight.model)
    _same(resumed.ema.module, straight.ema.module)
    assert straight.objective.k == resumed.objective.k == 4
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
    assert straight.objective.loss_fn.discretization() == 5  # N(3) with K' = 2: the curriculum moved


def test_cd_objective_keeps_its_ema_target_and_resumes_bit_exactly(tmp_path):
    teacher = RING.denoiser(RectifiedFlow(), "velocity")
    method = DISTILL_METHODS["consistency"]
    assert method.config({}, sample_steps=1)["sample"]["sampler"] == "consistency"

    def run(out, steps, resume=False):
        loss = ConsistencyLoss(teacher, steps=6, noise="uniform", weighting="uniform")
        make = lambda *a: ConsistencyObjective(*a, target_ema=0.5)  # noqa: E731
        trainer = Trainer(_student(RectifiedFlow(), hidden=16), loss, _data(), _config(max_steps=steps), out,
                          objective=make)
        trainer.train(resume=resume)
        return trainer

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume=True)
    _same(resumed.model, straight.model)
    _same(resumed.objective.target, straight.objective.target)
    assert not torch.equal(next(straight.objective.target.parameters()), next(straight.model.parameters()))
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def test_bad_setups_give_one_clear_message():
    with pytest.raises(DifflabError, match="set model.preconditioning=consistency"):
        build_objective(RunConfig(model=ModelConfig(objective="consistency_training")))
    with pytest.raises(DifflabError, match="model.objective"):
        build_objective(RunConfig(model=ModelConfig(objective="consistency")))
    with pytest.raises(DifflabError, match="total_steps"):
        ConsistencyLoss(None)
    with pytest.raises(DifflabError, match="consistency schedule 'ecd'"):
        ConsistencyLoss(None, total_steps=4, schedule="ecd")
    with pytest.raises(DifflabError, match="the ect schedule is consistency training's"):
        ConsistencyLoss(RING.denoiser(VPSDE(), "eps"), steps=18, schedule="ect")
    with pytest.raises(DifflabError, match="ect_q > 1"):
        ConsistencyLoss(None, total_steps=4, schedule="ect", ect_q=1.0)
    with pytest.raises(DifflabError, match="set model.preconditioning=consistency"):
        ConsistencyLoss(None, total_steps=4)(RING.denoiser(VPSDE(), "eps"), torch.zeros(2, 2))
    for options, message in (({"bogus": 1}, "has no option 'bogus'; its options are: .*s0, s1"),
                             ({"s0": "ten"}, "option s0: expected an integer")):
        with pytest.raises(DifflabError, match=f"model.objective_options for consistency_training {message}"):
            build_objective(RunConfig(model=ModelConfig(objective="consistency_training",
                                                        preconditioning="consistency", objective_options=options)))


# ---- the commands ------------------------------------------------------------------------------------------
def test_consistency_distill_then_sample_eval_and_resume(tmp_path):
    teacher, out = tmp_path / "teacher", tmp_path / "cd"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(teacher), "--steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["distill", str(teacher), "--method", "consistency", "--out", str(out), "--steps", "2",
                            "--set", "distill.options.steps=6"])
    assert r.exit_code == 0 and "N = 6, heun teacher steps, target ema" in r.output, r.output
    cfg = saved_config(out)
    assert (cfg["model"]["preconditioning"], cfg["sample"]["sampler"], cfg["sample"]["steps"]) == \
        ("consistency", "consistency", 2)
    sample_eval_resume(out, tmp_path, ("1", "4"), resumed_at=3)  # (2, the run's own, in eval)


def test_consistency_training_from_scratch_by_set(tmp_path):
    """--set model.objective=consistency_training alone: the run gets the consistency preconditioning, its
    curriculum length pinned and the consistency sampler; a resume with more steps keeps K."""
    out = tmp_path / "ct"
    sets = ["model.objective=consistency_training", "model.objective_options={s0: 2, s1: 8}"]
    r = runner.invoke(app, ["train", "toy2d", "--out", str(out), "--steps", "3", *TINY,
                            *[a for s in sets for a in ("--set", s)]])
    assert r.exit_code == 0, r.output
    cfg = saved_config(out)
    assert (cfg["model"]["preconditioning"], cfg["sample"]["sampler"], cfg["sample"]["schedule"],
            cfg["sample"]["schedule_options"]) == ("consistency", "consistency", "karras",
                                                   {"sigma_max": 80.0, "sigma_min": 0.8})
    r = runner.invoke(app, ["sample", str(out), "--n", "8", "--class", "1", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and "8 samples, 2 denoiser evaluations" in r.output, r.output
    r = runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", "1"])
    assert r.exit_code == 0 and "at step 4" in r.output, r.output
    assert saved_config(out)["model"]["objective_options"] == {"s0": 2, "s1": 8, "total_steps": 3}  # K pinned
    r = runner.invoke(app, ["train", "toy2d", "--out", str(tmp_path / "bad"), "--steps", "1", *TINY,
                            "--set", "model.objective=consistency_training", "--set", "model.preconditioning=edm",
                            "--set", "model.parameterization=x0"])
    assert r.exit_code != 0 and "set model.preconditioning=consistency" in r.output, r.output


def test_consistency_tuning_is_consistency_training_from_the_teachers_weights(tmp_path):
    """`distill --method consistency_tuning` (ECT): the teacher-free CT loss (teacher None: the CT pair, never a
    teacher step) on iCT's curriculum by default, or ECT's schedule (schedule=ect), over total_steps, which is
    also the default budget; the student run samples with the consistency sampler, starts from the teacher's
    network weights and resumes like any run."""
    method = DISTILL_METHODS["consistency_tuning"]
    plan = method.build(None, **method.check_options({"total_steps": 7, "s0": 2, "s1": 8}))
    loss = plan.loss_fn
    assert (loss.teacher, loss.steps, loss.total_steps, loss.schedule, loss.s0, loss.s1, loss.discretization(),
            loss.noise, loss.weighting, loss.metric) == \
        (None, None, 7, "ict", 2, 8, 3, "lognormal", "reciprocal", "pseudo_huber")
    loss = method.build(None, **method.check_options({"total_steps": 7, "schedule": "ect", "stages": 4})).loss_fn
    assert (loss.schedule, loss.stages, loss.ect_q, loss.ect_k, loss.ect_b) == ("ect", 4, 2.0, 8.0, 1.0)
    assert plan.objective is ConsistencyObjective and method.train_steps(total_steps=7) == 7  # stop-grad target
    teacher, out = tmp_path / "teacher", tmp_path / "ect"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(teacher), "--steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["distill", str(teacher), "--method", "consistency_tuning", "--out", str(out),
                            "--set", "distill.options.total_steps=3", "--set", "distill.options.schedule=ect",
                            "--set", "distill.options.stages=2"])
    assert r.exit_code == 0 and "from the teacher;" in r.output and "until 3 steps" in r.output, r.output
    assert "ECT's schedule, the gap divided by 2 at each of 2 stages over 3 steps, no teacher calls" in \
        " ".join(r.output.split()), r.output
    cfg = saved_config(out)
    assert (cfg["model"]["preconditioning"], cfg["sample"]["sampler"]) == ("consistency", "consistency")
    sample_eval_resume(out, tmp_path, ("1", "4"), resumed_at=4)


def test_multistep_times_chosen_by_a_metric_are_saved_and_reused(tmp_path):
    """`fit-schedule --metric sw2` on a consistency run: the greedy search starts from the run's Karras grid,
    keeps its ends, saves the best grid with its cost (one call per step per scored grid) and the metric's value,
    and `eval --schedule fitted` on the same seed reproduces that value exactly; `sample` reuses the grid."""
    import json

    from difflab.jobs.fit_schedule import schedule_path
    from difflab.sampling.grids import karras

    out = tmp_path / "ct"
    sets = ["model.objective=consistency_training", "model.objective_options={s0: 2, s1: 8}"]
    r = runner.invoke(app, ["train", "toy2d", "--out", str(out), "--steps", "3", *TINY,
                            *[a for s in sets for a in ("--set", s)]])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["fit-schedule", str(out), "--steps", "3", "--sampler", "consistency", "--metric", "sw2",
                            "--pilot", "48", "--rounds", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "from karras (sigma_max=80.0, sigma_min=0.8) on the sw2 of 48 samples (seed 1000)" in " ".join(r.output.split())
    saved = json.loads(schedule_path(out, "consistency", 3).read_text())
    start = karras(RectifiedFlow(), 3, sigma_max=80.0, sigma_min=0.8)
    assert saved["history"][0]["times"] == pytest.approx(start.tolist(), abs=1e-12)
    assert saved["times"][0] == pytest.approx(float(start[0]), abs=1e-12) and saved["times"][-1] == 0.0
    assert saved["metric_value"] == min(h["sw2"] for h in saved["history"]) and saved["pilot_rmse"] is None
    assert saved["max_evals"] == len(saved["history"]) > 1 and saved["fit_nfe"] == 3 * saved["max_evals"]
    r = runner.invoke(app, ["eval", str(out), "--sampler", "consistency", "--steps", "3", "--schedule", "fitted",
                            "--n", "48", "--seed", "1000", "--metrics", "sw2", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["results"]["sw2"] == pytest.approx(saved["metric_value"],
                                                                                            rel=1e-12)
    r = runner.invoke(app, ["sample", str(out), "--steps", "3", "--schedule", "fitted", "--n", "8", "--class", "1",
                            "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and "8 samples, 3 denoiser evaluations" in r.output, r.output

    r = runner.invoke(app, ["fit-schedule", str(out), "--steps", "2", "--sampler", "consistency", "--metric", "sw2",
                            "--pilot", "16", "--rounds", "1", "--start-schedule", "uniform", "--start-option",
                            "t_max=0.9877", "--device", "cpu"])  # the README's form
    assert r.exit_code == 0 and "from uniform (t_max=0.9877)" in r.output, r.output
    assert json.loads(schedule_path(out, "consistency", 2).read_text())["history"][0]["times"] == \
        pytest.approx([0.9877, 0.9877 / 2, 0.0], abs=1e-12)

    # the mean over two pilot batches: the saved value is the mean of eval's values on the two seeds, twice the calls
    r = runner.invoke(app, ["fit-schedule", str(out), "--steps", "2", "--sampler", "consistency", "--metric", "sw2",
                            "--pilot", "16", "--pilot-seeds", "2", "--rounds", "1", "--device", "cpu"])
    assert r.exit_code == 0 and "(the mean over seeds 1000..1001)" in " ".join(r.output.split()), r.output
    saved = json.loads(schedule_path(out, "consistency", 2).read_text())
    assert saved["seeds"] == [1000, 1001] and saved["fit_nfe"] == 2 * 2 * saved["max_evals"]
    values = []
    for seed in (1000, 1001):
        r = runner.invoke(app, ["eval", str(out), "--sampler", "consistency", "--steps", "2", "--schedule", "fitted",
                                "--n", "16", "--seed", str(seed), "--metrics", "sw2", "--json", str(tmp_path / "e.json")])
        assert r.exit_code == 0, r.output
        values.append(json.loads((tmp_path / "e.json").read_text())["results"]["sw2"])
    assert saved["metric_value"] == pytest.approx(sum(values) / 2, rel=1e-12) and values[0] != values[1]

    def fails(args, needle):
        r = runner.invoke(app, ["fit-schedule", str(out), "--steps", "3", *args])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output

    fails(["--sampler", "consistency", "--metric", "class_coverage"], "lower is better")
    fails(["--sampler", "consistency", "--metric", "sw2", "--start-weights", "ipndm"], "moves times only")
    fails(["--start-option", "rho=3"], "--start-option goes with --metric")
    fails(["--pilot-seeds", "2"], "--pilot-seeds goes with --metric")
    fails(["--sampler", "consistency", "--metric", "sw2", "--pilot-seeds", "0"], "--pilot-seeds")
    fails(["--sampler", "consistency", "--metric", "sw2", "--steps", "1"], "no interior time")
