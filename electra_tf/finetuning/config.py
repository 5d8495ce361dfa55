"""The fine-tuning configuration: which network, which tokenizer, which hyper-parameters.

:class:`FinetuningConfig` has three sections: ``model`` (the shared
:class:`~electra_tf.config.ModelConfig`; it must describe the pre-trained network), ``data``
(the tokenizer settings) and ``finetune`` (:class:`FinetuneConfig`, the hyper-parameters of
google-research/electra ``configure_finetuning.py``). Pre-training has its own config,
:class:`electra_tf.config.Config`.

A fine-tuning config is read from a YAML file (:func:`finetuning_config_from_yaml`): a
fine-tuning run's ``config.yaml``, or a pre-training config (a packaged one, a user's file, a
pre-trained model's saved ``config.yaml``), whose ``model`` section and tokenizer settings it
takes. Its ``finetune`` defaults are, the first that exists:

1. the file's ``finetune:`` section (pre-training configs written before the split have one);
2. the per-size defaults ``configs/finetuning/NAME.yaml`` of the packaged config ``NAME`` whose
   network the model is (vocabulary size aside): ``debug_tiny``, ``demo``, ``electra_small``
   (also ``electra_small_released``'s network), ``electra_large``;
3. the :class:`FinetuneConfig` defaults (the reference's, which are ELECTRA-Base's).

``--set`` overrides (:func:`apply_finetuning_overrides`) take ``model.*``, ``data.vocab_path``,
``data.lower_case`` and ``finetune.*``; ``train.log_every`` is accepted as the old name of
``finetune.log_every`` with a deprecation line.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from typing import Optional

from electra_tf import config as pretraining
from electra_tf.config import Config, ConfigError, ModelConfig, dataclass_from_dict
from electra_tf.config_io import (load_config, packaged_config_names, parse_yaml, read_saved_yaml,
                                  resolve_config_path, set_values, split_moved_keys)

# Old fine-tuning --set keys that live elsewhere now: old → new.
RENAMED_KEYS = {"train.log_every": "finetune.log_every"}


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """The tokenizer (the ``data`` section; pre-training's ``data`` has the same two keys).

    Attributes:
      vocab_path: WordPiece vocabulary file; empty means the packaged BERT uncased vocab.
      lower_case: lower-case and strip accents before WordPiece (uncased vocabularies).
    """

    vocab_path: str = ""
    lower_case: bool = True


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters; the defaults are google-research/electra's.

    The optimizer is the reference's AdamW (no bias correction, betas 0.9/0.999, epsilon 1e-6,
    global-norm clipping 1.0, linear decay to 0) with these settings. The source of every
    default is named in docs/finetuning.md ("Defaults and their sources").

    Attributes:
      learning_rate: peak learning rate (``configure_finetuning.py`` 1e-4; per-size files
        ``configs/finetuning/*.yaml`` set Small 3e-4 and Large 5e-5).
      layerwise_lr_decay: ``d`` in ``lr · d^(L + 2 − depth)`` (Large: 0.9).
      warmup_fraction: warmup as a fraction of the total steps.
      weight_decay: decoupled weight decay (the reference code's 0.01; the paper's table says 0).
      batch_size: training batch size.
      epochs: passes over the training set (the reference: 3, and 10 for RTE and STS-B).
      seq_length: maximum tokens per example (longer inputs are truncated).
      dropout_rate: dropout before the classification layer.
      loss_reduction: ``sum`` (the reference: the per-example losses of a batch are summed,
        ``run_finetuning.py``) or ``mean``.
      keep: which weights the run saves, exports and predicts with: ``last`` (the reference:
        the model after the last epoch) or ``best`` (the epoch with the best main dev metric,
        a choice made on the dev set, so its dev score is biased upward).
      seeds: comma-separated seeds; each is a full fine-tuning run, the median is reported.
      log_every: steps between training-loss points in TensorBoard.
    """

    learning_rate: float = 1e-4
    layerwise_lr_decay: float = 0.8
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 3
    seq_length: int = 128
    dropout_rate: float = 0.1
    loss_reduction: str = "sum"
    keep: str = "last"
    seeds: str = "1"
    log_every: int = 100


LOSS_REDUCTIONS = ("sum", "mean")
KEEP_CHOICES = ("last", "best")


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]``; names the bad item otherwise."""
    seeds = []
    for item in str(text).split(","):
        try:
            seeds.append(int(item.strip()))
        except ValueError:
            raise ConfigError(f"finetune.seeds={text!r}: {item.strip()!r} is not an integer "
                              "(expected comma-separated integers, e.g. 1,2,3)") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"finetune.seeds={text!r} repeats a seed")
    return seeds


@dataclasses.dataclass(frozen=True)
class FinetuningConfig:
    """The fine-tuning configuration: one YAML file, one section per dataclass."""

    model: ModelConfig = ModelConfig()
    data: TokenizerConfig = TokenizerConfig()
    finetune: FinetuneConfig = FinetuneConfig()

    def validate(self) -> "FinetuningConfig":
        """Checks cross-field constraints; returns self so calls chain."""
        self.model.validate()
        ft = self.finetune
        for name in ("batch_size", "epochs", "seq_length", "log_every"):
            if getattr(ft, name) < 1:
                raise ConfigError(f"finetune.{name}={getattr(ft, name)} must be >= 1")
        if ft.seq_length > self.model.max_position_embeddings:
            raise ConfigError(f"finetune.seq_length={ft.seq_length} exceeds "
                              f"model.max_position_embeddings={self.model.max_position_embeddings}")
        for name, choices in (("loss_reduction", LOSS_REDUCTIONS), ("keep", KEEP_CHOICES)):
            if getattr(ft, name) not in choices:
                raise ConfigError(f"finetune.{name}={getattr(ft, name)!r}: expected one of "
                                  f"{', '.join(choices)}")
        parse_seeds(ft.seeds)
        return self


def from_dict(data: dict) -> FinetuningConfig:
    """Builds a validated :class:`FinetuningConfig` from nested plain data, strictly."""
    return dataclass_from_dict(FinetuningConfig, data or {}).validate()


def from_pretraining(config: Config, finetune: Optional[dict] = None) -> FinetuningConfig:
    """The fine-tuning config of a network pre-trained with ``config``.

    ``finetune`` (plain data, e.g. an old ``finetune:`` section) gives the hyper-parameters;
    None takes the per-size defaults of the model's architecture (see the module docstring).
    """
    tokenizer = {f.name: getattr(config.data, f.name) for f in dataclasses.fields(TokenizerConfig)}
    return from_dict({"model": dataclasses.asdict(config.model), "data": tokenizer,
                      "finetune": fitting_length(
                          defaults_for_model(config.model) if finetune is None else finetune,
                          config.model)})


def fitting_length(finetune: dict, model: ModelConfig) -> dict:
    """``finetune`` with ``seq_length`` capped to the model's positions when it does not set
    it (the default 128 would not fit a model with fewer position embeddings)."""
    if "seq_length" in finetune or FinetuneConfig.seq_length <= model.max_position_embeddings:
        return finetune
    return {**finetune, "seq_length": model.max_position_embeddings}


def packaged_defaults(name: str) -> dict:
    """The ``finetune`` section of ``configs/finetuning/NAME.yaml``; ``{}`` if there is none."""
    path = resources.files("electra_tf") / "configs" / "finetuning" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return parse_yaml(path.read_text(encoding="utf-8"), str(path)).get("finetune") or {}


def defaults_for_model(model: ModelConfig) -> dict:
    """The :func:`packaged_defaults` of the packaged config whose model is ``model``
    (vocabulary size aside); ``{}`` when none is."""
    for name in packaged_config_names():
        defaults = packaged_defaults(name)
        if defaults and dataclasses.replace(
                load_config(name).model, vocab_size=model.vocab_size) == model:
            return defaults
    return {}


def finetuning_config_from_yaml(text: str, path: str) -> FinetuningConfig:
    """The fine-tuning config in a YAML file (see the module docstring for what it may be).

    A file with any section or ``data`` key besides fine-tuning's is a pre-training config: it
    is checked as one, then its model and tokenizer settings are taken.
    """
    data = parse_yaml(text, path)
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)}
    try:
        if set(data) <= {"model", "data", "finetune"} and \
                set(data.get("data") or {}) <= tokenizer_keys:
            data = dict(data)
            model = dataclass_from_dict(ModelConfig, data.get("model") or {}, "model.")
            data["finetune"] = fitting_length(
                data["finetune"] if "finetune" in data else defaults_for_model(model), model)
            return from_dict(data)
        data, moved = split_moved_keys(data)
        return from_pretraining(pretraining.from_dict(data), moved.get("finetune"))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_finetuning_config(name_or_path: str) -> FinetuningConfig:
    """Reads a YAML file or packaged config name (see :func:`finetuning_config_from_yaml`)."""
    path = resolve_config_path(name_or_path)
    with open(path, encoding="utf-8") as f:
        return finetuning_config_from_yaml(f.read(), path)


def load_saved_finetuning_config(directory: str) -> FinetuningConfig:
    """The fine-tuning config from a directory's ``config.yaml``: a fine-tuning run's (also one
    written before the split) or a pre-trained model's."""
    return finetuning_config_from_yaml(*read_saved_yaml(directory))


def apply_finetuning_overrides(config: FinetuningConfig, overrides) -> FinetuningConfig:
    """Returns ``config`` with ``section.key=value`` overrides applied and re-validated.

    :data:`RENAMED_KEYS` are accepted under their old names with one line on stderr.
    """
    items, renamed = [], []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() in RENAMED_KEYS:
            renamed.append(f"{key.strip()} is now {RENAMED_KEYS[key.strip()]}")
            item = f"{RENAMED_KEYS[key.strip()]}={value}"
        items.append(item)
    if renamed:
        print(f"deprecated: --set: {'; '.join(renamed)}", file=sys.stderr)
    try:
        return from_dict(set_values(dataclasses.asdict(config), items))
    except ConfigError as e:
        raise ConfigError(f"fine-tuning config: {e}") from None


def build_finetuning_config(config: Optional[str], init_dir: Optional[str],
                            overrides=()) -> FinetuningConfig:
    """What ``python -m electra_tf.finetune`` fine-tunes with.

    Args:
      config: ``--config``: a YAML file or packaged name; None takes the pre-trained model's
        saved config (``init_dir``), or the defaults (ELECTRA-Small) without one.
      init_dir: the pre-trained model directory, or None (``--init none``).
      overrides: ``--set`` items.
    """
    if config:
        base = load_finetuning_config(config)
    elif init_dir:
        base = load_saved_finetuning_config(init_dir)
    else:
        base = from_pretraining(Config())
    return apply_finetuning_overrides(base, overrides)

