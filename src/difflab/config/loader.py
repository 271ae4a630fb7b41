"""Presets, YAML files and `--set key=value` overrides -> a validated RunConfig."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import yaml

from difflab.baselines.registry import check_baseline_options
from difflab.config.sampling import check_sample_config
from difflab.config.schema import RunConfig
from difflab.config.validate import from_dict, to_dict
from difflab.nets.registry import check_network_options
from difflab.utils.errors import DifflabError


def preset_names() -> list[str]:
    """The presets shipped with difflab (config/presets/*.yaml)."""
    folder = resources.files("difflab.config") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise DifflabError(f"{origin} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DifflabError(f"{origin} must hold a mapping of config sections; got {type(data).__name__}")
    return data


def read_config_dict(preset_or_path: str | Path) -> dict:
    """The raw dict of a preset name or a YAML file path.

    A file wins; a preset name wins over a folder of that name (`difflab train digits --out digits` makes the
    folder `digits` before the config is read)."""
    path = Path(preset_or_path).expanduser()
    name = str(preset_or_path)
    if path.is_file():
        return _read_yaml(path.read_text(), str(path))
    if path.suffix in (".yaml", ".yml") or (path.exists() and name not in preset_names()):
        what = "is not a file" if path.exists() else "does not exist"
        raise DifflabError(f"config file {path} {what}; presets are: {', '.join(preset_names())}")
    if name not in preset_names():
        raise DifflabError(f"unknown preset {name!r}; presets are: {', '.join(preset_names())} (or give a .yaml path)")
    text = (resources.files("difflab.config") / "presets" / f"{name}.yaml").read_text()
    return _read_yaml(text, f"preset {name}")


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def parse_value(raw: str):
    """A command-line value parsed as YAML (7, 0.5, true, [1, 2], null) and 1e-3 as a number (YAML 1.1 reads
    exponents without a dot as text); text that is not YAML stays text."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    return float(value) if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()) else value


def parse_options(items: list[str] | None, flag: str = "--option") -> dict:
    """Repeatable `flag KEY=VALUE` strings -> {KEY: value} (values by parse_value; a later KEY wins).
    Names and types are checked by whoever takes them (difflab.utils.keywords.check_keywords)."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DifflabError(f"{flag} {item!r} must look like KEY=VALUE, e.g. {flag} eta=0.5")
        out[key.strip()] = parse_value(raw)
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML: 1e-3, true, [1, 2], text)."""
    for item in overrides:
        if "=" not in item:
            raise DifflabError(f"override {item!r} must look like section.key=value, e.g. train.lr=2e-4")
        key, raw = item.split("=", 1)
        value = parse_value(raw)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DifflabError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def load_config(preset_or_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A validated RunConfig from a preset or YAML file plus overrides."""
    data = apply_overrides(read_config_dict(preset_or_path), list(overrides or []))
    return config_from_dict(data)


def config_from_dict(data: dict) -> RunConfig:
    """A validated RunConfig: model.options checked against the network's constructor (names, types, ranges)
    and the sample options against the sampler and grid it names, before any data is read."""
    cfg = from_dict(RunConfig, data)
    if cfg.family != "diffusion":  # model.options are a baseline's constructor options
        check_baseline_options(cfg.family, cfg.model.options)
        return cfg
    check_network_options(cfg.model.network, cfg.model.options)
    return check_sample_config(cfg)


def config_to_dict(config: RunConfig) -> dict:
    return to_dict(config)
