"""Config: presets load and validate, overrides apply, every typo gets one clear message."""

import pytest
import torch

from difflab.config.factory import build_denoiser, build_loss, build_process, network_kwargs
from difflab.config.loader import config_from_dict, config_to_dict, load_config, parse_options, preset_names
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


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    # `difflab train digits --out digits` creates the folder `digits` before the config is read
    preset = load_config("digits")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    assert load_config("digits") == preset
    (tmp_path / "mine").mkdir()
    with pytest.raises(DifflabError, match="mine is not a file; presets are: digits"):
        load_config("mine")
    (tmp_path / "toy2d").write_text("train: {lr: 0.5}\n")  # a file of that name is the user's own config
    assert load_config("toy2d").train.lr == 0.5


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


@pytest.mark.parametrize(
    "overrides, message",
    [  # refused when the config is loaded, not at the first training preview
        (["sample.options.eta=1"], "sampler 'unipc' (sample.options) has no option 'eta'; its options are: corrector"),
        (["sample.sampler=ddim", "sample.options.eta=abc"], "sampler 'ddim' (sample.options) option eta: expected a number"),
        (["sample.schedule_options.rho=7"], "schedule 'uniform' (sample.schedule_options) has no option 'rho'"),
        (["sample.schedule=karras", "sample.schedule_options.rho=.inf"], "option rho: expected a finite number"),
        (["sample.steps=0"], "sample.steps must be >= 1"),
        (["sample.n=0"], "sample.n must be >= 1"),
        (["sample.guidance=.nan"], "config key sample.guidance: expected a finite number"),
        (["sample.schedule=nope"], "unknown schedule 'nope'; valid schedules are: default, fitted, karras"),
    ],
)
def test_sample_settings_are_checked_when_loading(overrides, message):
    with pytest.raises(DifflabError) as err:
        load_config("toy2d", overrides)
    assert message in str(err.value)


def test_sample_options_and_home_paths_load(tmp_path, monkeypatch):
    cfg = load_config("toy2d", ["sample.sampler=ddim", "sample.options.eta=1", "sample.schedule=karras",
                                "sample.schedule_options={rho: 5}"])
    assert cfg.sample.options == {"eta": 1} and cfg.sample.schedule_options == {"rho": 5}
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.yaml").write_text("data: {name: toy2d}\nsample: {n: 3}\n")
    assert load_config("~/mine.yaml").sample.n == 3


def test_command_line_options_parse_as_yaml_scalars():
    assert parse_options(["eta=0.5", "order=3", "corrector=false", "method=RK45", "rho=1e-3", "eta=1"]) == {
        "eta": 1, "order": 3, "corrector": False, "method": "RK45", "rho": 1e-3}
    for bad in ["eta", "=1", " =2"]:
        with pytest.raises(DifflabError, match="--schedule-option .* must look like KEY=VALUE"):
            parse_options([bad], "--schedule-option")


@pytest.mark.parametrize(
    "override, message",
    [  # each was accepted before and trained on an infinite learning rate or a zero sigma_data
        ("train.lr=1e400", "config key train.lr: expected a finite number; got inf"),
        ("loss.mean=.nan", "config key loss.mean: expected a finite number; got nan"),
        ("train.max_minutes=.inf", "train.max_minutes: expected a finite number; got inf (null where the key allows"),
        ("model.sigma_data=0", "model.sigma_data (the data's standard deviation) must be > 0"),
        ("model.time_scale=-1", "model.time_scale (c_noise = time_scale t) must be > 0; got -1"),
    ],
)
def test_config_numbers_are_finite_and_in_range(override, message):
    with pytest.raises(DifflabError) as err:
        load_config("toy2d", [override])
    assert message in str(err.value)
    assert load_config("toy2d", ["train.max_minutes=null"]).train.max_minutes is None


@pytest.mark.parametrize("preconditioning", ["none", "consistency"])
def test_model_time_scale_reaches_the_network_input(preconditioning):
    """model.time_scale is the NetworkDenoiser's c_noise = time_scale t: the net sees 2.5 t at time_scale 2.5."""
    from difflab.config.factory import build_denoiser, build_process

    cfg = load_config("toy2d", ["model.time_scale=2.5", f"model.preconditioning={preconditioning}"])
    model = build_denoiser(cfg, build_process(cfg.process), (2,))
    inner = getattr(model, "denoiser", model)
    seen = []
    inner.net.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    model(torch.zeros(3, 2), torch.tensor([0.2, 0.4, 0.8]))
    torch.testing.assert_close(seen[0], 2.5 * torch.tensor([0.2, 0.4, 0.8]), rtol=0, atol=1e-7)


def test_network_options_are_checked_before_any_data_is_read(tmp_path):
    """The folder preset with a missing folder and a bad network option: the option is named (it is checked
    when the config loads), not the folder (read when the data set is built)."""
    from typer.testing import CliRunner

    from difflab.cli.main import app

    r = CliRunner().invoke(app, ["train", "folder", "--set", f"data.options.root={tmp_path / 'none'}",
                                 "--set", "model.options.channel_mult=xxxx", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "option channel_mult: expected a list; got 'xxxx'" in r.output


@pytest.mark.parametrize("condition", ["class", "none", None])
def test_configs_written_with_the_retired_train_condition_load(condition, recwarn):
    """TrainConfig.condition is gone (the model's conditioning decides); a run folder or classifier written
    with it still loads, silently, and the key is not written again."""
    from difflab.config.schema import ClassifierConfig, ClassifierRun, DataConfig, LossConfig, ProcessConfig
    from difflab.config.validate import from_dict, to_dict

    old = config_to_dict(load_config("digits"))
    old["train"]["condition"] = condition
    cfg = config_from_dict(old)
    assert cfg == load_config("digits") and "condition" not in config_to_dict(cfg)["train"]
    clf = to_dict(ClassifierRun(ClassifierConfig(), ProcessConfig(), LossConfig(), DataConfig(), 10, [1, 8, 8]))
    clf["classifier"]["train"]["condition"] = condition
    assert from_dict(ClassifierRun, clf).classifier == ClassifierConfig()
    assert len(recwarn) == 0
    with pytest.raises(DifflabError, match="unknown config key train.conditions; valid keys in train are"):
        config_from_dict({**old, "train": {"conditions": "class"}})
