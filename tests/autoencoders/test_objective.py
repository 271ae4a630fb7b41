"""The autoencoder objective through the Trainer: it learns, resumes bit-exactly (discriminator, both
optimizers, EMA codebook and dead-code counters included), respects disc_start, logs its scalars."""

from __future__ import annotations

import pytest
import torch

from difflab.autoencoders.kl import KLAutoencoder
from difflab.autoencoders.objective import AutoencoderLossConfig, make_autoencoder_objective
from difflab.autoencoders.vq import VQAutoencoder
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, read_log
from difflab.utils.errors import DifflabError


def _images(n=32, size=8, seed=0) -> TensorBatchDataset:
    """Smooth random size x size RGB images in [-1, 1]: 4x4 noise upsampled."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return TensorBatchDataset(torch.nn.functional.interpolate(coarse, size=size, mode="bilinear"))


def _kl(seed=0) -> KLAutoencoder:
    torch.manual_seed(seed)
    return KLAutoencoder(3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3)


def _vq(seed=0) -> VQAutoencoder:
    torch.manual_seed(seed)
    return VQAutoencoder(3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3,
                         num_codes=8, ema=True, restart_after=1)


def _config(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=4, log_every=1, ckpt_every=0, ema=0.9, lr=2e-3, seed=3)
    return TrainConfig(**{**base, **kw})


def _train(model, out, losses, data=None, **kw) -> Trainer:
    trainer = Trainer(model, None, data or _images(), _config(**kw), out, objective=make_autoencoder_objective(losses))
    trainer.train()
    return trainer


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


def test_a_few_steps_reduce_the_reconstruction_loss(tmp_path):
    """20 steps on 16x16 images: the logged rec loss falls, and the posterior-mean reconstruction error
    is under 60% of the untrained model's and under 90% of the data's variance (the error of the best
    constant guess)."""
    data, model = _images(size=16), _kl()
    untrained = _kl().eval()
    _train(model, tmp_path, {"disc_weight": 0.0, "reconstruction": "l2"}, data=data, max_steps=20, log_every=4,
           lr=5e-3)
    log = read_log(tmp_path / "log.jsonl")
    recs = [r["rec"] for r in log]
    assert len(recs) == 5 and recs[-1] < 0.7 * recs[0]
    assert all("kl" in r and "d_loss" not in r for r in log)
    x = data.x
    with torch.no_grad():
        mse = (model.eval().decode(model.encode(x)) - x).square().mean().item()
        mse0 = (untrained.decode(untrained.encode(x)) - x).square().mean().item()
    assert mse < 0.6 * mse0 and mse < 0.9 * x.var().item()


@pytest.mark.parametrize("make", [_kl, _vq])
def test_resume_through_the_trainer_is_bit_exact(tmp_path, make):
    losses = {"disc_weight": 0.5, "disc_start": 1, "disc_layers": 1, "disc_channels": 8,
              "disc_loss": "non_saturating"}
    straight = _train(make(), tmp_path / "a", losses, max_steps=4, grad_accum=2)
    objective = make_autoencoder_objective(losses)
    Trainer(make(), None, _images(), _config(max_steps=2, grad_accum=2), tmp_path / "b", objective=objective).train()
    resumed = Trainer(make(seed=9), None, _images(), _config(max_steps=4, grad_accum=2), tmp_path / "b",
                      objective=objective)
    resumed.train(resume=True)
    _same(resumed.model, straight.model)
    _same(resumed.ema.module, straight.ema.module)
    _same(resumed.objective.disc, straight.objective.disc)
    assert read_log(tmp_path / "b" / "log.jsonl") == [
        {**r, "images_per_s": s["images_per_s"], "elapsed": s["elapsed"]}
        for r, s in zip(read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl"), strict=True)
    ]


def test_disc_start_is_respected(tmp_path):
    losses = {"disc_weight": 0.5, "disc_start": 3, "disc_layers": 1, "disc_channels": 8}
    trainer = Trainer(_vq(), None, _images(), _config(max_steps=5), tmp_path,
                      objective=make_autoencoder_objective(losses))
    initial = {k: v.clone() for k, v in trainer.objective.disc.state_dict().items()}
    records = []
    real_log = trainer.objective.log_stats

    def spy():
        stats = real_log()
        records.append((stats, {k: torch.equal(v, initial[k]) for k, v in trainer.objective.disc.state_dict().items()}))
        return stats

    trainer.objective.log_stats = spy
    trainer.train()
    for step, (stats, unchanged) in enumerate(records, start=1):
        assert {"rec", "codebook", "commitment", "code_usage", "perplexity"} <= set(stats)
        if step <= 3:  # updates 0, 1, 2: no adversarial term, no discriminator update
            assert stats["d_loss"] == 0 and stats["lambda"] == 0 and all(unchanged.values())
        else:
            assert stats["d_loss"] > 0 and stats["lambda"] > 0 and not all(unchanged.values())
    log = read_log(tmp_path / "log.jsonl")
    assert [r["d_loss"] for r in log] == [s["d_loss"] for s, _ in records]


def test_bad_options_are_one_message():
    with pytest.raises(DifflabError, match="unknown autoencoder loss option.*disc_wieght"):
        make_autoencoder_objective({"disc_wieght": 1.0})
    with pytest.raises(DifflabError, match="GAN loss"):
        AutoencoderLossConfig(disc_loss="wgan")
    with pytest.raises(DifflabError, match=r"option kl_weight must be >= 0 \(LDM uses 1e-6\); got -1.0"):
        AutoencoderLossConfig(kl_weight=-1.0)
    with pytest.raises(DifflabError, match="option disc_start must be an integer >= 0 .*; got 2.5"):
        AutoencoderLossConfig(disc_start=2.5)
    with pytest.raises(DifflabError, match="perceptual=..."):
        make_autoencoder_objective({"perceptual_weight": 1.0})(_kl(), None, _config(), None)


def test_multi_process_ema_codebook_is_refused_with_the_fix():
    from types import SimpleNamespace

    two = SimpleNamespace(num_processes=2)
    with pytest.raises(DifflabError, match="set ema=false and restart_after=0"):
        make_autoencoder_objective({"disc_weight": 0.0})(_vq(), None, _config(), two)


def test_perceptual_term_joins_the_reconstruction_loss(tmp_path):
    """rec = l1 + w * perceptual: the same model, data and draws log a larger first-step rec with the
    user's feature net (|x|) than with l1 alone."""
    def first_rec(out, **options):
        trainer = Trainer(_kl(), None, _images(), _config(max_steps=1), out, objective=make_autoencoder_objective(
            {"disc_weight": 0.0, **options}, perceptual=lambda v: v.abs()))
        trainer.train()
        return read_log(out / "log.jsonl")[0]["rec"]

    plain = first_rec(tmp_path / "a")
    with_features = first_rec(tmp_path / "b", perceptual_weight=1.0)
    assert with_features > plain


def test_resuming_with_other_discriminator_settings_is_one_message(tmp_path):
    objective = make_autoencoder_objective({"disc_weight": 0.5, "disc_layers": 1, "disc_channels": 8})
    Trainer(_kl(), None, _images(), _config(max_steps=1), tmp_path, objective=objective).train()
    plain = Trainer(_kl(), None, _images(), _config(max_steps=2), tmp_path,
                    objective=make_autoencoder_objective({"disc_weight": 0.0}))
    with pytest.raises(DifflabError, match="resume with the loss options the run was started with"):
        plain.train(resume=True)


def test_the_grad_scaler_is_checkpointed_with_the_objective():
    """Under fp16 the accelerator's grad scaler is part of the objective's state (as DenoisingObjective's):
    a resumed run starts from the saved scale, not from a fresh scaler's."""
    from accelerate import Accelerator

    acc = Accelerator()
    make = make_autoencoder_objective({"disc_weight": 0.5, "disc_layers": 1, "disc_channels": 8})
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    state = make(_kl(), None, _config(), acc).state_dict()
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    make(_kl(), None, _config(), acc).load_state_dict(state)
    assert acc.scaler.get_scale() == 2.0**10
    acc.scaler = None  # without fp16: no scaler saved, none restored
    assert make(_kl(), None, _config(), acc).state_dict()["scaler"] is None


def test_resuming_with_another_critic_architecture_is_one_message(tmp_path):
    """A checkpoint whose critic was built with other options (here disc_norm, whose default changed once)
    is refused with the option to set, not a state-dict RuntimeError."""
    options = {"disc_weight": 0.5, "disc_layers": 1, "disc_channels": 8}
    Trainer(_kl(), None, _images(), _config(max_steps=1), tmp_path,
            objective=make_autoencoder_objective({**options, "disc_norm": "group"})).train()
    other = Trainer(_kl(), None, _images(), _config(max_steps=2), tmp_path,
                    objective=make_autoencoder_objective({**options, "disc_norm": "batch"}))
    with pytest.raises(DifflabError, match="objective.disc_norm=group"):
        other.train(resume=True)
