"""Progressive distillation against the exact Gaussian-mixture teacher on the 2-D ring (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.analysis.gaussian_mixture import ring_mixture
from difflab.distill.progressive import (
    ProgressiveLoss,
    ProgressiveObjective,
    phase_plan,
    progressive_target,
    two_teacher_steps,
    x0_weight,
)
from difflab.distill.registry import DISTILL_METHODS
from difflab.nets.mlp import MLPNet
from difflab.param import NetworkDenoiser
from difflab.process import make_process
from difflab.sampling.ddpm import ddim
from difflab.train import TensorBatchDataset, TrainConfig, Trainer
from difflab.utils.errors import DifflabError

f64 = torch.float64
CASES = [("flow", "velocity"), ("vp", "eps"), ("ddpm", "v")]


class ConstantX0:
    """A denoiser whose x0 prediction is a given tensor (x0 parameterization): one DDIM step with it."""

    parameterization = "x0"

    def __init__(self, process, x0):
        self.process, self.x0 = process, x0

    def __call__(self, x, t, cond=None):
        return self.x0


def _times(t, t1, t2, n):
    return tuple(torch.full((n,), v, dtype=f64) for v in (t, t1, t2))


@pytest.mark.parametrize(("process", "param"), CASES)
@pytest.mark.parametrize("triple", [(1.0, 0.875, 0.75), (0.5, 0.375, 0.25), (0.25, 0.125, 0.0)])
def test_target_reproduces_two_teacher_steps_in_one_ddim_step(process, param, triple):
    """The exact identity of Algorithm 2: DDIM(t -> t'') with x0 = x~ lands on the teacher's x_{t''}."""
    proc = make_process(process)
    teacher = ring_mixture().denoiser(proc, param)
    g = torch.Generator().manual_seed(0)
    n = 64
    times = _times(*triple, n)
    t, _, t2 = times
    a, s = proc.alpha(t)[:, None], proc.sigma(t)[:, None]
    x0, _ = ring_mixture().sample(n, generator=g)
    z_t = a * x0 + s * torch.randn(n, 2, generator=g, dtype=f64)
    x_t2 = two_teacher_steps(teacher, z_t, times)
    target = progressive_target(z_t, x_t2, a, s, proc.alpha(t2)[:, None], proc.sigma(t2)[:, None])
    one_step = ddim(ConstantX0(proc, target), z_t, torch.tensor([triple[0], triple[2]], dtype=f64))
    assert torch.allclose(one_step, x_t2, atol=1e-10, rtol=0)
    # the teacher's two steps are difflab's DDIM sampler on the grid (t, t', t'')
    assert torch.allclose(x_t2, ddim(teacher, z_t, torch.tensor(triple, dtype=f64)), atol=1e-10, rtol=0)
    # and the target is not the teacher's own one-step x0 (else the test could not fail)
    assert (target - teacher.predict(z_t, t).x0).abs().max() > 1e-3


def test_weighting_is_truncated_snr():
    proc = make_process("flow")
    t = torch.tensor([1.0, 0.5, 0.25], dtype=f64)
    snr = ((1 - t) / t) ** 2
    assert torch.allclose(x0_weight(proc, t, "truncated_snr"), torch.clamp(snr, min=1))
    assert torch.allclose(x0_weight(proc, t, "snr_plus_one"), snr + 1)


def test_the_loss_draws_from_the_global_rng_without_a_generator():
    """generator=None (a caller outside the trainer) draws j and eps from torch's global RNG, as
    torch.randint does: reproducible under torch.manual_seed, one loss per sample."""
    proc = make_process("flow")
    loss_fn = ProgressiveLoss(ring_mixture().denoiser(proc, "velocity"), student_steps=2)
    x0 = ring_mixture().sample(8, generator=torch.Generator().manual_seed(0))[0].float()
    student = _student(hidden=8)
    torch.manual_seed(4)
    first = loss_fn(student, x0, None, generator=None)
    torch.manual_seed(4)
    assert first.shape == (8,) and torch.equal(first, loss_fn(student, x0, None, generator=None))


def test_phase_plan_and_its_messages():
    assert phase_plan(64, 1) == [32, 16, 8, 4, 2, 1]
    assert phase_plan(8, 2) == [4, 2]
    with pytest.raises(DifflabError, match="power of two"):
        phase_plan(12, 1)
    with pytest.raises(DifflabError, match="final_steps < start_steps"):
        phase_plan(4, 4)
    with pytest.raises(DifflabError, match="has no option 'phases'; its options are: final_steps, lr_anneal, phase_steps"):
        DISTILL_METHODS["progressive"].check_options({"phases": 3})


def _student(seed=0, hidden=64):
    torch.manual_seed(seed)
    net = MLPNet(data_dim=2, hidden_dim=hidden, num_blocks=2, frequency_dim=16)
    return NetworkDenoiser(net, make_process("flow"), "velocity")


def test_trained_student_reproduces_two_teacher_steps():
    """A tiny MLP trained briefly (100 steps of 256) on the exact ring teacher, N = 2 student steps from 4
    teacher steps: its first step (t = 1 -> 0.5) lands within RMSE 0.06 of the teacher's two steps (measured
    0.039, the same under 1 and 2 threads), where the teacher's own single DDIM step is 0.265 away (the gap
    must stay above 4x)."""
    proc = make_process("flow")
    teacher = ring_mixture().denoiser(proc, "velocity")
    loss_fn = ProgressiveLoss(teacher, student_steps=2)
    student = _student(hidden=32)
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(100):
        x0, _ = ring_mixture().sample(256, generator=g)
        loss = loss_fn(student, x0.float(), None, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # measure on the student's first step t = 1 -> 0.5 (teacher 1 -> 0.75 -> 0.5) from pure noise
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2), dtype=f64)
    teacher_two = ddim(teacher, z, torch.tensor([1.0, 0.75, 0.5], dtype=f64))
    teacher_one = ddim(teacher, z, torch.tensor([1.0, 0.5], dtype=f64))
    with torch.no_grad():
        student_one = ddim(student, z.float(), torch.tensor([1.0, 0.5], dtype=f64)).to(f64)
    rmse = (student_one - teacher_two).pow(2).sum(1).mean().sqrt()
    base = (teacher_one - teacher_two).pow(2).sum(1).mean().sqrt()
    assert rmse < 0.06, float(rmse)
    assert base > 4 * rmse


def _train(out, steps, resume=False, phase_steps=3):
    proc = make_process("flow")
    teacher = ring_mixture().denoiser(proc, "velocity")
    g = torch.Generator().manual_seed(0)
    data = TensorBatchDataset(ring_mixture().sample(256, generator=g)[0].float())
    cfg = TrainConfig(lr=1e-3, batch_size=32, max_steps=steps, log_every=1, ckpt_every=0, ema=500, p_uncond=0.0)

    def objective(model, loss_fn, config, accelerator):
        return ProgressiveObjective(model, loss_fn, config, accelerator, phases=[4, 2, 1], phase_steps=phase_steps,
                                    teacher0=teacher)

    trainer = Trainer(_student(hidden=16), ProgressiveLoss(teacher, 4), data, cfg, out, objective=objective)
    trainer.train(resume=resume)
    return trainer


@pytest.mark.parametrize("stop", [3, 4])
def test_phases_advance_and_resume_exactly(tmp_path, stop):
    """9 steps in one go equal `stop` steps, then a resume for the rest: across two phase boundaries, stopped
    at the end of phase 0 (the resumed run enters phase 1 from the saved EMA) or inside phase 1 (its teacher,
    a frozen student copy, restored from the checkpoint)."""
    whole = _train(tmp_path / "whole", 9)
    assert whole.objective.phase == 2 and whole.objective.student_steps == 1
    assert whole.objective.loss_fn.student_steps == 1 and whole.objective.phase_teacher is not None
    _train(tmp_path / "split", stop)
    split = _train(tmp_path / "split", 9, resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(), split.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    ta, tb = whole.objective.phase_teacher.state_dict(), split.objective.phase_teacher.state_dict()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert math.isclose(whole.objective.loss_fn.grid[1].item(), 0.5)


def test_phases_of_their_own_lengths(tmp_path):
    """phase_steps=[2, 3, 1]: the phases end after 2, 5 and 6 updates (the 4-step student for updates 0-1, the
    2-step one for 2-4, the 1-step one from 5 on); the budget is their sum, the EMA's cap 1/8 of the longest
    phase and its ramp-up 1/8; a list of the wrong length or a count below 1 is one message."""
    for steps, phase, student in ((2, 0, 4), (3, 1, 2), (5, 1, 2), (6, 2, 1)):
        trainer = _train(tmp_path / f"s{steps}", steps, phase_steps=[2, 3, 1])
        objective = trainer.objective
        assert (objective.updates, objective.phase, objective.student_steps) == (steps, phase, student), steps
        assert objective.loss_fn.student_steps == student
    method = DISTILL_METHODS["progressive"]
    options = method.check_options({"start_steps": 8, "phase_steps": [2, 3, 1]})
    assert options["phase_steps"] == [2, 3, 1]
    assert method.train_steps(**options) == 6 and method.train_steps(start_steps=8, phase_steps=4) == 12
    assert method.config({"train": {"batch_size": 64}}, **options)["train"] == {"ema": 3 * 64 // 8, "ema_rampup": 0.125}
    assert method.config({"train": {"batch_size": 64}}, start_steps=8, phase_steps=[40, 16, 24])["train"]["ema"] == 320
    with pytest.raises(DifflabError, match="lists 2 phase lengths for 3 phases"):
        method.train_steps(start_steps=8, phase_steps=[2, 3])
    with pytest.raises(DifflabError, match="must be >= 1 optimizer steps per phase"):
        method.train_steps(start_steps=8, phase_steps=[2, 0, 1])


def test_lr_anneal_decays_the_rate_linearly_within_each_phase(tmp_path):
    """lr_anneal with phases of [2, 3, 2] updates and no warm-up: the rate at updates 0..6 is lr x (1, 1/2 |
    1, 2/3, 1/3 | 1, 1/2), then the last phase's last factor (1/2); the trainer logs exactly those rates;
    without the option the rate stays lr."""
    from difflab.train import read_log

    teacher = ring_mixture().denoiser(make_process("flow"), "velocity")
    data = TensorBatchDataset(ring_mixture().sample(64, generator=torch.Generator().manual_seed(0))[0].float())
    rates = {}
    for anneal in (True, False):
        cfg = TrainConfig(lr=1e-3, batch_size=32, max_steps=8, log_every=1, ckpt_every=0, ema=500, p_uncond=0.0,
                          warmup_steps=0)

        def objective(model, loss_fn, config, accelerator, anneal=anneal):
            return ProgressiveObjective(model, loss_fn, config, accelerator, phases=[4, 2, 1], phase_steps=[2, 3, 2],
                                        teacher0=teacher, lr_anneal=anneal)

        out = tmp_path / f"a{anneal}"
        Trainer(_student(hidden=16), ProgressiveLoss(teacher, 4), data, cfg, out, objective=objective).train()
        rates[anneal] = [r["lr"] for r in read_log(out / "log.jsonl")]
    assert rates[True] == pytest.approx([1e-3 * f for f in (1, 1 / 2, 1, 2 / 3, 1 / 3, 1, 1 / 2, 1 / 2)], rel=1e-12)
    assert rates[False] == pytest.approx([1e-3] * 8, rel=1e-12)


def test_each_phase_starts_from_the_last_ones_ema_which_restarts(tmp_path):
    """A phase's teacher is the previous phase's EMA (not its raw student, which differs from it). The EMA's
    ramp-up clock counts the current phase's images only: at the first update of a phase the half-life is ~0,
    so the EMA equals the student; one update later it averages (beta = 0.5^8 with a ramp-up of 1/8 after one
    batch)."""
    from difflab.train.ema import ema_beta

    def trained(steps):
        cfg = TrainConfig(lr=1e-3, batch_size=32, max_steps=steps, log_every=1, ckpt_every=0, ema=10_000,
                          ema_rampup=0.125, p_uncond=0.0)
        proc = make_process("flow")
        teacher = ring_mixture().denoiser(proc, "velocity")
        data = TensorBatchDataset(ring_mixture().sample(256, generator=torch.Generator().manual_seed(0))[0].float())

        def objective(model, loss_fn, config, accelerator):
            return ProgressiveObjective(model, loss_fn, config, accelerator, phases=[4, 2, 1],
                                        phase_steps=[3, 3, 1], teacher0=teacher)

        trainer = Trainer(_student(hidden=16), ProgressiveLoss(teacher, 4), data, cfg, tmp_path / f"r{steps}",
                          objective=objective)
        trainer.train()
        return trainer

    end0, first = trained(3), trained(4)  # updates 0-2 in phase 0, update 3 the first of phase 1
    teacher = first.objective.phase_teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in end0.ema.module.state_dict().items())
    assert not all(torch.equal(a, b) for a, b in zip(end0.model.parameters(), end0.ema.module.parameters(),
                                                     strict=True))
    assert first.objective.phase == 1 and first.objective.ema_images() == 32  # one update of phase 1 done
    for (name, a), b in zip(first.model.state_dict().items(), first.ema.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    second = trained(5)  # one more update: the EMA averages again
    assert not all(torch.equal(a, b) for a, b in zip(second.model.parameters(), second.ema.module.parameters(),
                                                     strict=True))
    assert ema_beta(10_000, 32, 32, 0, 0.125) == 0.5**8 and ema_beta(10_000, 0, 32, 0, 0.125) == 0.0
