"""Configs in files: packaged names, YAML loading, ``--set`` overrides, the saved copy.

:func:`load_config` reads a YAML file (or a packaged config by name, e.g. ``electra_small``)
strictly into a :class:`~electra_tf.config.Config` and applies ``section.key=value``
overrides; :func:`save_config` writes the effective config next to every checkpoint, fine-tuning
run and export, and :func:`load_saved_config` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from importlib import resources
from typing import Optional

import yaml

from electra_tf.config import Config, ConfigError, _type_name, from_dict, to_dict


def packaged_config_names() -> list[str]:
    """Names of the configs that ship with the package (``electra_small``, ``debug_tiny``, …)."""
    folder = resources.files("electra_tf") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str) -> str:
    """A YAML path as given, or the packaged config of that name (``electra_small``)."""
    if os.path.exists(name_or_path):
        return name_or_path
    base = os.path.basename(name_or_path)
    base = base[:-5] if base.endswith(".yaml") else base
    if base in packaged_config_names():
        return str(resources.files("electra_tf") / "configs" / f"{base}.yaml")
    raise ConfigError(
        f"config {name_or_path!r} is neither a file nor a packaged config "
        f"({', '.join(packaged_config_names())})")


def load_config(name_or_path: Optional[str] = None, overrides: tuple[str, ...] = ()) -> Config:
    """Loads a YAML config (a path or a packaged name) and applies ``a.b=value`` overrides.

    Args:
      name_or_path: a YAML file, a packaged config name, or None for the built-in defaults
        (ELECTRA-Small).
      overrides: ``section.key=value`` strings; values are parsed as YAML scalars and type
        checked against the field.

    Raises:
      ConfigError: unknown key, wrong type, malformed override or invalid combination.
    """
    data: dict = {}
    if name_or_path:
        path = resolve_config_path(name_or_path)
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
        try:
            config = from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    else:
        config = Config().validate()
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: tuple[str, ...] | list[str]) -> Config:
    """Returns ``config`` with ``section.key=value`` overrides applied and re-validated."""
    data = dataclasses.asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"override {dotted!r}: {'.'.join(parts[:i + 1])!r} is not a config section; "
                    f"sections: {', '.join(k for k, v in node.items() if isinstance(v, dict))}")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ConfigError(
                f"unknown config key {dotted!r}; valid keys: "
                f"{', '.join(k for k, v in node.items() if not isinstance(v, dict))}")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return from_dict(data)


def override_keys() -> list[str]:
    """Every dotted key ``--set`` accepts, with its type and default (for ``--help``)."""
    rows = []
    for section, cls in typing.get_type_hints(Config).items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rows.append(f"{section}.{f.name} ({_type_name(hints[f.name])}, default {f.default!r})")
    return rows


def save_config(config: Config, directory: str, extra: Optional[dict] = None) -> str:
    """Writes the effective config (and derived values) as ``config.yaml`` + ``config.json``.

    ``extra`` (e.g. tokenizer settings) is stored in the JSON only.
    Returns the YAML path.
    """
    import tensorflow as tf  # gs:// and other file systems

    tf.io.gfile.makedirs(directory)
    data = dataclasses.asdict(config)
    yaml_path = os.path.join(directory, "config.yaml")
    with tf.io.gfile.GFile(yaml_path, "w") as f:
        f.write(yaml.safe_dump(data, sort_keys=False))
    full = to_dict(config)
    if extra:
        full.update(extra)
    with tf.io.gfile.GFile(os.path.join(directory, "config.json"), "w") as f:
        f.write(json.dumps(full, indent=2, sort_keys=True))
    return yaml_path


def load_saved_config(directory: str) -> Config:
    """Loads the ``config.yaml`` that :func:`save_config` wrote into ``directory``."""
    import tensorflow as tf

    path = os.path.join(directory, "config.yaml")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{directory}: no config.yaml (expected a model directory written "
                          "by electra_tf.pretrain or electra_tf.finetune)")
    with tf.io.gfile.GFile(path) as f:
        try:
            return from_dict(yaml.safe_load(f.read()))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
