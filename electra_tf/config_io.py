"""Configs in files: packaged names, YAML loading, ``--set`` overrides, the saved copy.

:func:`load_config` reads a YAML file (or a packaged config by name, e.g. ``electra_small``)
strictly into a pre-training :class:`~electra_tf.config.Config` and applies
``section.key=value`` overrides; :func:`save_config` writes the effective config (pre-training's
or fine-tuning's) next to every checkpoint, fine-tuning run and export, and
:func:`load_saved_config` reads a pre-training one back (fine-tuning's:
:mod:`electra_tf.finetuning.config`).

Keys that left the pre-training config (:data:`MOVED_KEYS`) still load from old files and
``--set``: they are dropped with one ``deprecated:`` line on stderr that says where they went.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import typing
from importlib import resources
from typing import Optional

import yaml

from electra_tf.config import Config, ConfigError, from_dict, to_dict, type_name


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


# Keys that left the pre-training config, and where they went.
MOVED_KEYS = {
    "finetune": "the fine-tuning config (python -m electra_tf.finetune --set finetune.KEY=VALUE; "
                "a saved model's finetune: section still gives fine-tuning its defaults)",
    "optimizer.layerwise_lr_decay": "finetune.layerwise_lr_decay (pre-training never used it)",
}


def split_moved_keys(data: dict) -> tuple[dict, dict]:
    """``data`` without the :data:`MOVED_KEYS`, and their values by dotted key.

    The caller's ``data`` is not modified.
    """
    data, moved = dict(data or {}), {}
    for dotted in MOVED_KEYS:
        *sections, key = dotted.split(".")
        parent = data
        for section in sections:
            if not isinstance(parent.get(section), dict):
                break
            parent[section] = dict(parent[section])
            parent = parent[section]
        else:
            if key in parent:
                moved[dotted] = parent.pop(key)
    return data, moved


def _moved_key(dotted: str) -> Optional[str]:
    """The :data:`MOVED_KEYS` entry a dotted ``--set`` key falls under, if any."""
    return next((k for k in MOVED_KEYS if dotted == k or dotted.startswith(k + ".")), None)


def _warn_moved(keys, where: str) -> None:
    keys = list(dict.fromkeys(keys))
    print(f"deprecated: {where}: " + "; ".join(f"{k} moved to {MOVED_KEYS[k]}" for k in keys)
          + f"; pre-training ignores {'them' if len(keys) > 1 else 'it'}", file=sys.stderr)


def parse_yaml(text: str, path: str) -> dict:
    """A YAML file's mapping of sections (``{}`` when empty); ConfigError naming ``path``."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def config_from_yaml(text: str, path: str) -> Config:
    """The pre-training config in YAML ``text`` read from ``path``; moved keys are dropped with
    one line on stderr."""
    data, moved = split_moved_keys(parse_yaml(text, path))
    if moved:
        _warn_moved(moved, path)
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


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
    config = Config().validate()
    if name_or_path:
        path = resolve_config_path(name_or_path)
        with open(path, encoding="utf-8") as f:
            config = config_from_yaml(f.read(), path)
    return apply_overrides(config, overrides)


def set_values(data: dict, overrides) -> dict:
    """A copy of nested plain ``data`` with ``section.key=value`` overrides set.

    Only existing keys may be set; values are parsed as YAML scalars (type checks are the
    caller's, when it converts the result).
    """
    data = copy.deepcopy(data)
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
    return data


def apply_overrides(config: Config, overrides: tuple[str, ...] | list[str]) -> Config:
    """Returns ``config`` with ``section.key=value`` overrides applied and re-validated.

    Overrides of :data:`MOVED_KEYS` are dropped with one line on stderr.
    """
    moved = [_moved_key(item.split("=", 1)[0].strip()) for item in overrides]
    if any(moved):
        _warn_moved([k for k in moved if k], "--set")
    kept = [item for item, key in zip(overrides, moved) if not key]
    return from_dict(set_values(dataclasses.asdict(config), kept))


def override_keys(config_class: type = Config) -> list[str]:
    """Every dotted key ``--set`` accepts, with its type and default (for ``--help``)."""
    rows = []
    for section, cls in typing.get_type_hints(config_class).items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rows.append(f"{section}.{f.name} ({type_name(hints[f.name])}, default {f.default!r})")
    return rows


def save_config(config, directory: str, extra: Optional[dict] = None) -> str:
    """Writes the effective config as ``config.yaml`` + ``config.json``.

    ``config`` is a pre-training :class:`Config` (the JSON adds its derived values) or a
    fine-tuning :class:`~electra_tf.finetuning.config.FinetuningConfig`. ``extra`` (e.g.
    tokenizer settings) is stored in the JSON only.
    Returns the YAML path.
    """
    import tensorflow as tf  # gs:// and other file systems

    tf.io.gfile.makedirs(directory)
    data = dataclasses.asdict(config)
    yaml_path = os.path.join(directory, "config.yaml")
    with tf.io.gfile.GFile(yaml_path, "w") as f:
        f.write(yaml.safe_dump(data, sort_keys=False))
    full = to_dict(config) if isinstance(config, Config) else dict(data)
    if extra:
        full.update(extra)
    with tf.io.gfile.GFile(os.path.join(directory, "config.json"), "w") as f:
        f.write(json.dumps(full, indent=2, sort_keys=True))
    return yaml_path


def read_saved_yaml(directory: str) -> tuple[str, str]:
    """The text of the ``config.yaml`` that :func:`save_config` wrote into ``directory``, and
    its path."""
    import tensorflow as tf

    path = os.path.join(directory, "config.yaml")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{directory}: no config.yaml (expected a model directory written "
                          "by electra_tf.pretrain or electra_tf.finetune)")
    with tf.io.gfile.GFile(path) as f:
        return f.read(), path


def load_saved_config(directory: str) -> Config:
    """Loads the pre-training ``config.yaml`` that :func:`save_config` wrote into
    ``directory`` (an old one's moved keys are dropped with one line on stderr)."""
    return config_from_yaml(*read_saved_yaml(directory))
