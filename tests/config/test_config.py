"""Config: presets load and validate, overrides apply, every typo gets one clear message."""

import pytest

from difflab.config.factory import build_denoiser, build_loss, build_process, network_kwargs
from difflab.config.loader import config_from_dict, config_to_dict, load_config, preset_names
from difflab.utils.errors import DifflabError


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_and_round_trips(name):
    cfg = load_config(name)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_overrides_are_parsed_as_yaml():
    cfg = load_config("digits", ["train.lr=3e-4", "model.options.base_channels=16", "train.grad_clip=null"])
    assert cfg.train.lr == 3e-4 and cfg.model.options["base_channels"] == 16 and cfg.train.grad_clip is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lrr=1"], "unknown config key train.lrr; valid keys in train are: batch_size"),
        (["train.lr=abc"], "train.lr: expected a number"),
        (["train.max_steps=1.5"], "train.max_steps: expected an integer"),
        (["trian.lr=1"], "unknown config key trian"),
        (["train.lr"], "section.key=value"),
        (["train.mixed_precision=fp8"], "mixed precision"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(DifflabError, match=message):
        load_config("digits", overrides)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(DifflabError, match="presets are: digits"):
        load_config("digitz")
    with pytest.raises(DifflabError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2")
    with pytest.raises(DifflabError, match="not valid YAML"):
        load_config(bad)


def test_factory_builds_what_the_config_names():
    cfg = load_config("digits", ["model.conditioning=class"])
    process = build_process(cfg.process)
    model = build_denoiser(cfg, process, (1, 8, 8), num_classes=10)
    assert model.parameterization == "velocity" and model.net.cond_embed is not None
    assert build_loss(cfg.loss).time_sampler.kind == "logit_normal"
    with pytest.raises(DifflabError, match="vector data"):
        network_kwargs(cfg.model, (2,), None, None)
    with pytest.raises(DifflabError, match="labelled"):
        network_kwargs(cfg.model, (1, 8, 8), None, None)
    edm = load_config("digits", ["model.preconditioning=edm"])
    with pytest.raises(DifflabError, match="parameterization=x0"):
        build_denoiser(edm, process, (1, 8, 8))
    with pytest.raises(DifflabError, match="process"):
        build_process(load_config("digits", ["process.name=vpp"]).process)
    with pytest.raises(DifflabError, match="beta_min"):
        build_process(load_config("digits", ["process.name=vp", "process.options={beta_min: -1}"]).process)
