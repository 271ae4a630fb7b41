"""Autoencoder runs (`difflab train-autoencoder`): their config, presets, and the factory of their objects.

An autoencoder run is described by an AutoencoderRunConfig, saved in every checkpoint's config.yaml:

    data:         the images (difflab.data.build_dataset), as in a diffusion run
    autoencoder:  kind (kl: KL-VAE; vq: VQ-VAE / VQ-GAN) and the model's constructor options
                  (difflab.autoencoders.KLAutoencoder / VQAutoencoder; in_channels comes from the data)
    objective:    the options of difflab.autoencoders.objective.make_autoencoder_objective (reconstruction
                  loss, KL weight, discriminator and its start step, ...)
    train:        the Trainer's settings (difflab.train.TrainConfig)
    latent_scale: s = 1 / std of the training latents (Rombach et al. 2022 §4.3.2, Stable Diffusion's
                  0.18215), measured by the job at every checkpoint (1.0 until then) and stored here and in
                  the weights' buffer; difflab.autoencoders.base applies it in to_latent / from_latent only
    scale_items:  how many training images the scale is measured on

Autoencoder presets live in config/presets/autoencoders/, apart from the diffusion presets, so that
`difflab train` never offers them and `difflab train-autoencoder` offers nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from difflab.autoencoders import Autoencoder
from difflab.autoencoders.kl import KLAutoencoder
from difflab.autoencoders.objective import AutoencoderLossConfig, make_autoencoder_objective
from difflab.autoencoders.vq import VQAutoencoder
from difflab.config.loader import apply_overrides, read_config_dict
from difflab.config.schema import DataConfig
from difflab.config.validate import from_dict, to_dict
from difflab.train.settings import TrainConfig
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.keywords import check_keywords

AUTOENCODERS = {"kl": KLAutoencoder, "vq": VQAutoencoder}
DATA_KEYS = ("in_channels",)  # set from the data, not by options
PRESET_FOLDER = "autoencoders"  # under config/presets/
DIFFUSION_SECTIONS = ("process", "model", "loss", "sample")


def _default_data() -> DataConfig:
    return DataConfig("shapes", {"n": 20000, "seed": 0, "size": 32, "combos": "train", "jitter": 1})


def _default_train() -> TrainConfig:
    return TrainConfig(lr=1e-3, batch_size=32, ema=5000, max_steps=3000, p_uncond=0.0, sample_every=500,
                       ckpt_every=500, keep_last=2, log_every=50)


@dataclass
class AutoencoderModelConfig:
    """The model: kind (kl | vq) and the options of its class (AUTOENCODERS[kind])."""

    kind: str = "kl"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_choice("autoencoder kind", self.kind, AUTOENCODERS)
        fixed = sorted(set(self.options) & set(DATA_KEYS))
        if fixed:
            raise ValueError(f"autoencoder.options {fixed} are set from the run's data; drop them")


@dataclass
class AutoencoderRunConfig:
    """Everything an autoencoder run is built from (see the module docstring)."""

    data: DataConfig = field(default_factory=_default_data)
    autoencoder: AutoencoderModelConfig = field(default_factory=AutoencoderModelConfig)
    objective: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=_default_train)
    latent_scale: float = 1.0
    scale_items: int = 2048
    preview: int = 8

    def __post_init__(self):
        if not (self.latent_scale > 0 and math.isfinite(self.latent_scale)):
            raise ValueError(f"latent_scale must be a positive number (1 / std of the latents); got {self.latent_scale}")
        if self.scale_items < 2:
            raise ValueError(f"scale_items (images the latent scale is measured on) must be >= 2; got {self.scale_items}")
        if not 1 <= self.preview <= 32:
            raise ValueError(f"preview (images per reconstruction preview) must lie in 1..32; got {self.preview}")
        if self.train.p_uncond != 0.0:
            raise ValueError("an autoencoder has no condition to drop: leave train.p_uncond at 0")


# ---------------------------------------------------------------- presets and files


def autoencoder_preset_names() -> list[str]:
    """The autoencoder presets shipped with difflab (config/presets/autoencoders/*.yaml)."""
    folder = resources.files("difflab.config") / "presets" / PRESET_FOLDER
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_autoencoder_config_dict(preset_or_path: str | Path) -> dict:
    """The raw dict of an autoencoder preset name or a YAML file; a diffusion config is refused by name."""
    names = autoencoder_preset_names()
    path = Path(preset_or_path).expanduser()
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        if str(preset_or_path) not in names:
            raise DifflabError(f"unknown autoencoder preset {str(preset_or_path)!r}; autoencoder presets are: "
                               f"{', '.join(names)} (or give a .yaml path; diffusion presets train with "
                               "`difflab train`)")
        path = Path(str(resources.files("difflab.config") / "presets" / PRESET_FOLDER / f"{preset_or_path}.yaml"))
    elif not path.is_file():
        raise DifflabError(f"config file {path} does not exist; autoencoder presets are: {', '.join(names)}")
    data = read_config_dict(path)
    diffusion = [k for k in DIFFUSION_SECTIONS if k in data]
    if diffusion and "autoencoder" not in data:
        raise DifflabError(f"{preset_or_path} is a diffusion config (it has a {diffusion[0]} section): train it "
                           f"with `difflab train {preset_or_path}`; autoencoder presets are: {', '.join(names)}")
    return data


def check_autoencoder_options(kind: str, options: dict) -> dict:
    """autoencoder.options checked against AUTOENCODERS[kind]'s constructor (names, types) and coerced."""
    cls = AUTOENCODERS[check_choice("autoencoder kind", kind, AUTOENCODERS)]
    return check_keywords(cls, options, f"autoencoder {kind!r} (autoencoder.options)", skip=DATA_KEYS)


def autoencoder_config_from_dict(data: dict) -> AutoencoderRunConfig:
    """A validated AutoencoderRunConfig: unknown keys, wrong types, unknown model and objective options are
    one DifflabError each, before any data is read."""
    cfg = from_dict(AutoencoderRunConfig, data)
    options = check_autoencoder_options(cfg.autoencoder.kind, cfg.autoencoder.options)
    # every loss option written out (checked: one message for an unknown one), so the saved config keeps
    # meaning the same run when a default changes later
    typed = check_keywords(AutoencoderLossConfig, cfg.objective, "the autoencoder loss (objective)")
    objective = AutoencoderLossConfig.from_options(typed).to_dict()
    return replace(cfg, autoencoder=replace(cfg.autoencoder, options=options), objective=objective)


def load_autoencoder_config(preset_or_path: str | Path, overrides: list[str] | None = None) -> AutoencoderRunConfig:
    """A validated AutoencoderRunConfig from an autoencoder preset or YAML file plus `section.key=value` overrides."""
    return autoencoder_config_from_dict(apply_overrides(read_autoencoder_config_dict(preset_or_path),
                                                        list(overrides or [])))


def autoencoder_config_to_dict(cfg: AutoencoderRunConfig) -> dict:
    return to_dict(cfg)


# ---------------------------------------------------------------- the factory


def build_autoencoder(cfg: AutoencoderRunConfig, data_shape: tuple[int, ...]) -> Autoencoder:
    """The untrained autoencoder of `cfg` for images of `data_shape` (C, H, W), H and W divisible by f."""
    if len(data_shape) != 3:
        raise DifflabError(f"an autoencoder takes images (C, H, W); data set {cfg.data.name!r} has items of shape "
                           f"{tuple(data_shape)}: use image data (shapes, folder, digits at size 8 or 16)")
    options = check_autoencoder_options(cfg.autoencoder.kind, cfg.autoencoder.options)
    model = AUTOENCODERS[cfg.autoencoder.kind](in_channels=data_shape[0], **options)
    h, w = data_shape[1:]
    if h % model.factor or w % model.factor:
        raise DifflabError(f"images of {h}x{w} pixels do not divide by the autoencoder's downsampling factor "
                           f"f = {model.factor}: choose an image size that is a multiple of {model.factor} "
                           f"(e.g. --set data.options.size={max(model.factor, h // model.factor * model.factor)}) "
                           "or fewer levels in autoencoder.options.channel_mult")
    model.set_latent_scale(cfg.latent_scale)
    return model


def latent_shape(model: Autoencoder, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(c, H / f, W / f): the latent of one image of data_shape (C, H, W)."""
    return model.latent_channels, data_shape[1] // model.factor, data_shape[2] // model.factor


def build_autoencoder_objective(cfg: AutoencoderRunConfig):
    """The trainer's MakeObjective for cfg.objective (difflab.autoencoders.objective)."""
    return make_autoencoder_objective(dict(cfg.objective))


# ---------------------------------------------------------------- held-out data


def held_out_images(data: DataConfig) -> tuple[DataConfig, str]:
    """The images an autoencoder trained on `data` is evaluated on, and what they are, in words.

    Shapes: the (shape, colour) pairs the run did not train on (combos train <-> holdout, a list -> the
    other pairs), drawn with another seed. A run on every pair gets another seed only: with jitter 1
    there are 5670 distinct images, so those can occur in training (said so). Any other data set: the
    training data itself, without random flips (said so).
    """
    if data.name != "shapes":
        options = {k: v for k, v in data.options.items() if k != "hflip"}
        return replace(data, options=options), "the training data (no held-out split for this data set)"
    from difflab.data.shapes import Shapes, all_combos

    combos = data.options.get("combos", "all")
    if isinstance(combos, list):  # ids or names: Shapes reads them
        trained = {tuple(pair) for pair in Shapes(1, combos=combos).combos.tolist()}
        combos = [list(p) for p in all_combos() if p not in trained] or "all"
    else:
        combos = {"train": "holdout", "holdout": "train"}.get(combos, "all")
    seed = int(data.options.get("seed", 0)) + 1
    held = replace(data, options={**data.options, "combos": combos, "seed": seed})
    if combos == "all":
        return held, f"shapes of every (shape, colour) pair, seed {seed}: the run trained on every pair, so " \
                     "these images can occur in training"
    return held, f"shapes of the (shape, colour) pairs the run did not train on ({combos}), seed {seed}"
