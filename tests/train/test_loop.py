"""The training loop: exact resume, interrupts, warm-up, accumulation, logs, dropout, previews, errors."""

from __future__ import annotations

import csv
import os
import signal

import pytest
import torch

from difflab.objectives import DiffusionLoss
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, latest_checkpoint, read_log, warmup_factor
from difflab.train.prepare import Captions, ClassLabels
from difflab.utils.errors import DifflabError

from .helpers import tiny_denoiser, toy_data


def _config(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=6, log_every=1, ckpt_every=0, ema=64.0, lr=1e-2, seed=7)
    return TrainConfig(**{**base, **kw})


def mse_at_half(model, x0, cond=None, generator=None):
    """Deterministic per-sample mean loss: || D(x0, 1/2) - x0 ||^2 / D."""
    t = torch.full((x0.shape[0],), 0.5)
    return (model(x0, t, cond) - x0).square().mean(1)


def _losses(out_dir) -> list[float]:
    return [r["loss"] for r in read_log(os.path.join(out_dir, "log.jsonl"))]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


def test_resume_after_interrupt_repeats_the_uninterrupted_run(tmp_path):
    """Dropout (global RNG), condition dropout and t/eps draws (loss generator), accumulation, warm-up,
    EMA and RNG-hungry previews: a run interrupted mid-step and resumed matches the straight run bitwise."""
    cfg = _config(max_steps=10, grad_accum=2, ckpt_every=4, p_uncond=0.3, warmup_steps=3, sample_every=3)
    previews = lambda model, step, out_dir: torch.randn(100)  # noqa: E731 - draws from the global RNG
    loss, labels = DiffusionLoss(), ClassLabels(0.3)
    straight = Trainer(tiny_denoiser(dropout=0.2), loss, toy_data(), cfg, tmp_path / "a", sample_fn=previews,
                       prepare=labels)
    straight.train()

    calls = {"n": 0}

    def crashing_loss(model, x0, cond=None, generator=None):
        calls["n"] += 1
        if calls["n"] == 2 * 6 + 2:  # second micro-batch of the 7th step: data and RNG must roll back
            raise KeyboardInterrupt
        return loss(model, x0, cond, generator)

    first = Trainer(tiny_denoiser(dropout=0.2), crashing_loss, toy_data(), cfg, tmp_path / "b", sample_fn=previews,
                    prepare=labels)
    result = first.train()
    assert (result.stop_reason, result.step) == ("interrupted", 6)
    assert latest_checkpoint(tmp_path / "b") == tmp_path / "b" / "ckpt-6"

    second = Trainer(tiny_denoiser(seed=99, dropout=0.2), loss, toy_data(), cfg, tmp_path / "b", sample_fn=previews,
                     prepare=labels)
    result = second.train(resume=True)
    assert (result.stop_reason, result.step, result.images_seen) == ("max_steps", 10, 80)
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a") and len(_losses(tmp_path / "a")) == 10
    _assert_same_weights(second.model, straight.model)
    _assert_same_weights(second.ema.module, straight.ema.module)
    assert second.ema.num_updates == straight.ema.num_updates == 10


def test_resume_from_a_finished_shorter_run(tmp_path):
    straight = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=8), tmp_path / "a")
    straight.train()
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=3), tmp_path / "b").train()
    resumed = Trainer(tiny_denoiser(seed=5), DiffusionLoss(), toy_data(), _config(max_steps=8), tmp_path / "b")
    resumed.train(resume=True)
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
    _assert_same_weights(resumed.model, straight.model)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_and_saves(tmp_path, sig):
    calls = {"n": 0}

    def signalling_loss(model, x0, cond=None, generator=None):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), sig)
        return mse_at_half(model, x0)

    before = signal.getsignal(sig)
    trainer = Trainer(tiny_denoiser(num_classes=None), signalling_loss, toy_data(), _config(max_steps=50), tmp_path)
    result = trainer.train()
    assert (result.stop_reason, result.step) == ("interrupted", 3)
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-3"
    assert signal.getsignal(sig) is before


def test_warmup_schedule_values(tmp_path):
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(lr=1e-3, warmup_steps=4), tmp_path).train()
    lrs = [r["lr"] for r in read_log(tmp_path / "log.jsonl")]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rel=1e-12)


def test_accumulating_two_halves_gives_the_full_batch_gradient(tmp_path):
    grads = {}
    for accum in (1, 2):
        cfg = _config(max_steps=1, grad_accum=accum, grad_clip=None)
        trainer = Trainer(tiny_denoiser(num_classes=None), mse_at_half, toy_data(), cfg, tmp_path / str(accum))


        def record(opt, args, kwargs, a=accum):
            grads[a] = [p.grad.clone() for g in opt.param_groups for p in g["params"]]

        trainer.objective.optimizer.optimizer.register_step_pre_hook(record)
        trainer.train()
    assert len(grads[1]) == len(grads[2]) > 0
    for g1, g2 in zip(grads[1], grads[2], strict=True):
        torch.testing.assert_close(g2, g1, rtol=1e-5, atol=1e-7)
    assert any(g.abs().max() > 1e-3 for g in grads[1])


def test_logs_average_between_log_steps_and_files_appear(tmp_path):
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(log_every=1), tmp_path / "every").train()
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(log_every=4), tmp_path / "sparse").train()
    every, sparse = read_log(tmp_path / "every" / "log.jsonl"), read_log(tmp_path / "sparse" / "log.jsonl")
    assert [r["step"] for r in sparse] == [4, 6]  # the last step is always logged
    per_step = [r["loss"] for r in every]
    assert sparse[0]["loss"] == pytest.approx(sum(per_step[:4]) / 4, rel=1e-6)
    assert sparse[1]["loss"] == pytest.approx(sum(per_step[4:]) / 2, rel=1e-6)
    assert [r["images_seen"] for r in sparse] == [32, 48]
    assert all(r["grad_norm"] > 0 and r["images_per_s"] > 0 for r in sparse)
    with open(tmp_path / "sparse" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4, 6]
    assert float(rows[0]["loss"]) == pytest.approx(sparse[0]["loss"])
    png = (tmp_path / "sparse" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_condition_dropout_and_labels(tmp_path):
    seen = []

    def recording_loss(model, x0, cond=None, generator=None):
        seen.append(cond)
        return mse_at_half(model, x0, cond)

    data = toy_data(n=512)
    cfg = _config(batch_size=128, max_steps=8, p_uncond=0.25)
    Trainer(tiny_denoiser(), recording_loss, data, cfg, tmp_path / "class", prepare=ClassLabels(0.25)).train()
    drops = torch.cat([c["drop"] for c in seen])
    assert drops.dtype == torch.bool and abs(drops.float().mean().item() - 0.25) < 0.04  # 1024 draws: ~3 sd
    labels = torch.cat([c["class_labels"] for c in seen[:4]])  # the first epoch: every label once
    assert torch.equal(labels.sort().values, data.label.sort().values)
    seen.clear()
    Trainer(tiny_denoiser(num_classes=None), recording_loss, data, _config(max_steps=2), tmp_path / "none").train()
    assert seen == [None, None]


def test_text_condition_goes_through_the_injected_captions_prepare(tmp_path):
    seen, encoded = [], []

    def encode(captions):
        codes = torch.tensor([len(c) for c in captions], dtype=torch.float32)
        context = codes[:, None, None].expand(-1, 2, 3).clone()  # (B, L=2, D=3)
        encoded.append(context)
        return context, torch.ones(len(captions), 2, dtype=torch.bool)

    def recording_loss(model, x0, cond=None, generator=None):
        seen.append(cond)
        return mse_at_half(model, x0)

    base = toy_data()
    data = TensorBatchDataset(base.x, caption=["a" * int(k + 1) for k in base.label])
    cfg = _config(max_steps=3)
    Trainer(tiny_denoiser(num_classes=None), recording_loss, data, cfg, tmp_path,
            prepare=Captions(encode, p_uncond=0.5)).train()
    assert [sorted(c) for c in seen] == [["context", "context_mask", "drop"]] * 3
    for c, e in zip(seen, encoded, strict=True):
        assert torch.equal(c["context"], e) and c["context_mask"].all() and c["drop"].shape == (8,)


def test_previews_use_the_ema_and_do_not_change_training(tmp_path):
    calls = []

    def previews(model, step, out_dir):
        calls.append((step, model.training, out_dir))
        torch.randn(1000)

    model = tiny_denoiser(dropout=0.5)  # dropout draws from the global RNG, like the previews
    Trainer(model, DiffusionLoss(), toy_data(), _config(max_steps=5, sample_every=2), tmp_path / "p",
            sample_fn=previews).train()
    assert calls == [(2, False, tmp_path / "p"), (4, False, tmp_path / "p"), (5, False, tmp_path / "p")]
    model = tiny_denoiser(dropout=0.5)
    Trainer(model, DiffusionLoss(), toy_data(), _config(max_steps=5), tmp_path / "q").train()
    assert _losses(tmp_path / "p") == _losses(tmp_path / "q")


def test_time_budget_stops_and_checkpoints(tmp_path):
    result = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_minutes=1e-9), tmp_path).train()
    assert (result.stop_reason, result.step) == ("max_minutes", 1)
    assert result.checkpoint == tmp_path / "ckpt-1" and latest_checkpoint(tmp_path) == result.checkpoint


def test_bad_setups_give_one_clear_message(tmp_path):
    with pytest.raises(DifflabError, match="use a multiple of 4"):
        Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(batch_size=10, grad_accum=4), tmp_path)
    with pytest.raises(DifflabError, match="lr must be positive; p_uncond must lie in"):
        _config(lr=0.0, p_uncond=1.0)
    with pytest.raises(DifflabError, match="unknown mixed precision 'fp8'"):
        _config(mixed_precision="fp8")
    reduced = lambda model, x0, cond=None, generator=None: mse_at_half(model, x0).mean()  # noqa: E731
    with pytest.raises(DifflabError, match=r"unreduced per-sample losses of shape \(8,\)"):
        Trainer(tiny_denoiser(), reduced, toy_data(), _config(), tmp_path / "r").train()
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=1), tmp_path / "done").train()
    with pytest.raises(DifflabError, match="pass resume=True"):
        Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=1), tmp_path / "done").train()


@pytest.mark.parametrize("when", ["final", "periodic"])
def test_ctrl_c_in_a_preview_keeps_a_resumable_checkpoint(tmp_path, when):
    """A KeyboardInterrupt out of a preview (the end-of-training one, or one on the way) still leaves a
    checkpoint of the last finished step, and resuming it repeats the uninterrupted run."""
    cfg = _config(max_steps=4, sample_every=3 if when == "periodic" else 10)

    def previews(model, step, out_dir):
        raise KeyboardInterrupt

    result = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), cfg, tmp_path / "b", sample_fn=previews).train()
    stopped_at = 3 if when == "periodic" else 4
    assert (result.stop_reason, result.step) == ("interrupted", stopped_at)
    assert result.checkpoint == latest_checkpoint(tmp_path / "b") == tmp_path / "b" / f"ckpt-{stopped_at}"
    straight = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=4), tmp_path / "a")
    straight.train()
    resumed = Trainer(tiny_denoiser(seed=3), DiffusionLoss(), toy_data(), _config(max_steps=4), tmp_path / "b")
    assert resumed.train(resume=True).step == 4
    _assert_same_weights(resumed.model, straight.model)


def test_sigint_twice_in_the_final_preview_still_saves_first(tmp_path):
    """Ctrl-C twice during the end-of-training preview: the second raises inside the preview, which
    comes after the checkpoint, so the run is kept."""
    def previews(model, step, out_dir):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    cfg = _config(max_steps=3, sample_every=10)
    result = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), cfg, tmp_path, sample_fn=previews).train()
    assert (result.stop_reason, result.step) == ("interrupted", 3)
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-3"


def test_a_spent_budget_trains_no_further_step(tmp_path):
    """Limits are totals over resumes and are checked before each step: resuming a run that reached
    max_steps adds no step (today's loop took one step past the budget of a minutes-limited run)."""
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=3), tmp_path).train()
    again = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=3), tmp_path)
    result = again.train(resume=True)
    assert (result.stop_reason, result.step) == ("max_steps", 3)
    timed = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=None, max_minutes=1e-9), tmp_path)
    result = timed.train(resume=True)  # elapsed restored from the checkpoint exceeds the tiny budget
    assert (result.stop_reason, result.step) == ("max_minutes", 3)
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2, 3]


@pytest.mark.slow
def test_resume_with_two_workers_is_bit_exact(tmp_path):
    """Two DataLoader workers and a randomly flipping data set: stopped at step 3 and resumed, the run
    ends on the weights of the straight run (and of the same run with no workers)."""
    from .test_data import FlippingData

    def flipping():
        data = FlippingData(64)
        data.x = torch.cat([data.x, data.x.flip(0)], 1) / 64  # (64, 2) points for the 2-D denoiser
        return data

    cfg = _config(max_steps=6, num_workers=2)
    straight = Trainer(tiny_denoiser(num_classes=None), DiffusionLoss(), flipping(), cfg, tmp_path / "a")
    straight.train()
    Trainer(tiny_denoiser(num_classes=None), DiffusionLoss(), flipping(), _config(max_steps=3, num_workers=2),
            tmp_path / "b").train()
    resumed = Trainer(tiny_denoiser(num_classes=None, seed=4), DiffusionLoss(), flipping(), cfg, tmp_path / "b")
    resumed.train(resume=True)
    _assert_same_weights(resumed.model, straight.model)
    no_workers = Trainer(tiny_denoiser(num_classes=None), DiffusionLoss(), flipping(), _config(max_steps=6),
                         tmp_path / "c")
    no_workers.train()
    _assert_same_weights(no_workers.model, straight.model)


class TwoOptimizerObjective:
    """A GAN-shaped objective through the seam: the model and a critic of its own, each with its own
    optimizer, updated in turn; the critic and both optimizers live in the objective's state."""

    def __init__(self, model, loss_fn, config, accelerator):
        self.model = model
        torch.manual_seed(11)
        self.critic = torch.nn.Linear(2, 1)
        self.opt_model = torch.optim.SGD(model.parameters(), lr=1e-2)
        self.opt_critic = torch.optim.SGD(self.critic.parameters(), lr=1e-2)

    def update(self, batches, generator, need_norm, commit):
        x0, cond = next(batches)
        t = torch.rand(x0.shape[0], generator=generator)
        fake = self.model(x0 + torch.randn(x0.shape, generator=generator), t, cond)
        critic_loss = self.critic(fake.detach()).mean() - self.critic(x0).mean()
        critic_loss.backward()
        with commit():
            self.opt_critic.step()
            self.opt_critic.zero_grad()
            model_loss = -self.critic(fake).mean()  # against the updated critic
            model_loss.backward()
            self.opt_model.step()
            self.opt_model.zero_grad()
            self.opt_critic.zero_grad()
        return model_loss.detach(), None, 1e-2

    def state_dict(self):
        return {"critic": self.critic.state_dict(), "model": self.opt_model.state_dict(),
                "opt_critic": self.opt_critic.state_dict()}

    def load_state_dict(self, state):
        self.critic.load_state_dict(state["critic"])
        self.opt_model.load_state_dict(state["model"])
        self.opt_critic.load_state_dict(state["opt_critic"])


def test_an_objective_with_two_optimizers_plugs_in_and_resumes_exactly(tmp_path):
    straight = Trainer(tiny_denoiser(num_classes=None), None, toy_data(), _config(max_steps=4), tmp_path / "a",
                       objective=TwoOptimizerObjective)
    straight.train()
    Trainer(tiny_denoiser(num_classes=None), None, toy_data(), _config(max_steps=2), tmp_path / "b",
            objective=TwoOptimizerObjective).train()
    resumed = Trainer(tiny_denoiser(num_classes=None, seed=8), None, toy_data(), _config(max_steps=4), tmp_path / "b",
                      objective=TwoOptimizerObjective)
    resumed.train(resume=True)
    _assert_same_weights(resumed.model, straight.model)
    _assert_same_weights(resumed.objective.critic, straight.objective.critic)
    assert not torch.equal(straight.objective.critic.weight, TwoOptimizerObjective(
        tiny_denoiser(num_classes=None), None, None, None).critic.weight)  # the critic did train
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def test_ctrl_c_twice_during_a_save_does_not_cut_it_short(tmp_path, monkeypatch):
    from difflab.train import loop

    real_save = loop.save_checkpoint

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # "stop at once" lands inside the save: it finishes first
        return real_save(*args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", interrupted_save)
    result = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=9, ckpt_every=2), tmp_path).train()
    assert (result.stop_reason, result.step) == ("interrupted", 2)
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-2"
    assert (tmp_path / "ckpt-2" / "manifest.json").is_file()


def test_a_resume_trains_at_the_rate_its_config_now_names(tmp_path):
    """`difflab train --resume --set train.lr=...`: the resumed steps log (and take) the new rate, with the
    warm-up factor at the saved position, while the saved Adam moments are kept; an unchanged config resumes
    bitwise (test_resume_after_interrupt_repeats_the_uninterrupted_run)."""
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=2, lr=1e-2, warmup_steps=4),
            tmp_path).train()
    resumed = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(),
                      _config(max_steps=5, lr=1e-3, warmup_steps=4, betas=(0.8, 0.9), weight_decay=0.5), tmp_path)
    resumed.train(resume=True)
    lrs = [r["lr"] for r in read_log(tmp_path / "log.jsonl")]
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-4, 1e-3, 1e-3], rel=1e-12)
    group = resumed.objective.optimizer.param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.8, 0.9), 0.5)
    assert int(resumed.objective.optimizer.state[resumed.objective.params[0]]["step"]) == 5  # moments carried on


@pytest.mark.parametrize("decay, tail", [("linear", [1.0, 0.75, 0.5, 0.25]),
                                         ("cosine", [1.0, 0.5 + 0.5 * 2**-0.5, 0.5, 0.5 - 0.5 * 2**-0.5])])
def test_the_rate_decays_from_lr_decay_from_to_zero_at_max_steps(tmp_path, decay, tail):
    """warm-up over 2 updates, stable, then decay over updates 2..5 of 6: u = (step - 2) / 4 per update."""
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(),
            _config(lr=1e-2, warmup_steps=2, lr_decay=decay, lr_decay_from=2), tmp_path).train()
    lrs = [r["lr"] for r in read_log(tmp_path / "log.jsonl")]
    assert lrs == pytest.approx([5e-3, 1e-2, *(1e-2 * f for f in tail)], rel=1e-12)


def test_a_resume_can_add_steps_that_decay(tmp_path):
    """Warm-up-stable-decay on resume: 4 steps at a constant rate, then 4 more that decay linearly to 0 at 8."""
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), _config(max_steps=4), tmp_path).train()
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(),
            _config(max_steps=8, lr_decay="linear", lr_decay_from=4), tmp_path).train(resume=True)
    lrs = [r["lr"] for r in read_log(tmp_path / "log.jsonl")]
    assert lrs == pytest.approx([1e-2] * 4 + [1e-2, 7.5e-3, 5e-3, 2.5e-3], rel=1e-12)


def test_bad_decay_settings(tmp_path):
    with pytest.raises(DifflabError, match="lr_decay must be one of none, linear, cosine, not 'step'"):
        _config(lr_decay="step")
    with pytest.raises(DifflabError, match="lr_decay_from must be >= 0"):
        _config(lr_decay="linear", lr_decay_from=-1)
    for kw in ({"lr_decay_from": 6}, {"max_steps": None, "max_minutes": 1.0}):  # checked once the limits are known
        cfg = _config(lr_decay="linear", **kw)
        with pytest.raises(DifflabError, match="give a step limit past lr_decay_from"):
            Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), cfg, tmp_path / "x")
