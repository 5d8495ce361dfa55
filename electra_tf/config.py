"""Typed, frozen configuration for every part of electra_tf.

A config is plain data: nested frozen dataclasses loaded from YAML. Loading is strict (an
unknown key is an error that names the key and the valid ones; a value of the wrong type is an
error that names the key, the value and the expected type), overrides use dotted paths
(``--set train.num_steps=100``) and the effective config is written next to every checkpoint and
export (files and overrides: :mod:`electra_tf.config_io`).

Values the reference implementation derives are derived here too, never typed in YAML:
generator heads (``hidden // 64``), generator FFN width (``4 × hidden``) and
``max_predictions = int((mask_prob + 0.005) × seq_length)``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Optional


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Transformer encoder hyper-parameters (the discriminator's; the generator derives its own).

    Attributes:
      vocab_size: number of WordPiece ids; must equal the vocabulary's line count.
      hidden_size: width of the transformer layers.
      num_layers: number of transformer layers.
      num_heads: attention heads per layer (``hidden_size`` must be divisible by it).
      intermediate_size: width of the feed-forward layer.
      embedding_size: width of the (shared) token/position/segment embeddings; projected to
        ``hidden_size`` when different (ELECTRA-Small: 128 → 256).
      max_position_embeddings: size of the learned position table.
      type_vocab_size: number of segment ids.
      dropout_rate: dropout after embeddings, attention output and feed-forward output.
      attention_dropout_rate: dropout on attention probabilities.
      activation: ``gelu`` (exact, erf-based, as the original ELECTRA) or ``gelu_approximate``
        (tanh approximation, as keras-hub).
      layer_norm_epsilon: LayerNorm epsilon (1e-12 in the reference).
      initializer_range: stddev of the truncated-normal weight initializer.
    """

    vocab_size: int = 30522
    hidden_size: int = 256
    num_layers: int = 12
    num_heads: int = 4
    intermediate_size: int = 1024
    embedding_size: int = 128
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-12
    initializer_range: float = 0.02

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_heads={self.num_heads}")
        _check_choice("model.activation", self.activation, ("gelu", "gelu_approximate", "relu"))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """The generator: same depth as the discriminator, narrower.

    Attributes:
      hidden_fraction: generator width as a fraction of ``model.hidden_size`` (paper: 1/4 for
        Small and Large, 1/3 for Base). Ignored when ``hidden_size`` is set.
      hidden_size: explicit generator width (overrides ``hidden_fraction``).
      num_heads: explicit head count; default ``max(1, hidden // 64)`` as the reference.
      intermediate_size: explicit FFN width; default ``4 × hidden`` as the reference.
    """

    hidden_fraction: float = 0.25
    hidden_size: Optional[int] = None
    num_heads: Optional[int] = None
    intermediate_size: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Pre-training objective (google-research/electra ``configure_pretraining.py``).

    Attributes:
      objective: ``electra`` (replaced-token detection + generator MLM) or ``mlm`` (a plain
        BERT-style masked LM on the same encoder, for ablations).
      mask_prob: fraction of non-special tokens selected for prediction.
      max_predictions: cap on selected positions per sequence; default
        ``int((mask_prob + 0.005) × seq_length)``.
      mask_token_rate: of the selected positions, the fraction replaced by ``[MASK]``.
      random_token_rate: of the selected positions, the fraction replaced by a random token;
        the rest keep the original token (and are still predicted).
      generator_weight: weight of the generator MLM loss.
      discriminator_weight: weight of the replaced-token-detection loss (paper: 50).
      temperature: sampling temperature for the generator's replacements.
      replacements: ``generator`` (ELECTRA) or ``uniform``: replacements drawn uniformly from
        the vocabulary instead of from the generator (the reference's ``uniform_generator``
        control; the generator still trains on its MLM loss but does not choose replacements).
        A discriminator that cannot leave the all-original baseline with uniform replacements
        has a defect; with them it tells how much the generator's choices matter.
    """

    objective: str = "electra"
    mask_prob: float = 0.15
    max_predictions: Optional[int] = None
    mask_token_rate: float = 0.85
    random_token_rate: float = 0.0
    generator_weight: float = 1.0
    discriminator_weight: float = 50.0
    temperature: float = 1.0
    replacements: str = "generator"

    def validate(self) -> None:
        _check_choice("objective.objective", self.objective, ("electra", "mlm"))
        _check_choice("objective.replacements", self.replacements, ("generator", "uniform"))
        for name in ("mask_prob", "mask_token_rate", "random_token_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"objective.{name}={value} must be within [0, 1]")
        if self.mask_token_rate + self.random_token_rate > 1.0:
            raise ConfigError(
                "objective.mask_token_rate + objective.random_token_rate must be <= 1, got "
                f"{self.mask_token_rate} + {self.random_token_rate}")
        if self.temperature <= 0:
            raise ConfigError(f"objective.temperature={self.temperature} must be > 0")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and learning-rate schedule (google-research/electra ``model/optimization.py``).

    The rate at step t is ``learning_rate · (1 − t/T)^decay_power · min(1, t/warmup_steps)``
    (warmup multiplied into the decay), with T the total number of steps.

    Attributes:
      name: ``adamw`` or ``lamb``.
      learning_rate: peak learning rate.
      warmup_steps: linear warmup length in steps.
      warmup_fraction: warmup as a fraction of the total steps; used when > 0 (fine-tuning).
      decay_power: exponent of the polynomial decay (1 = linear).
      end_learning_rate: rate reached at the last step.
      weight_decay: decoupled weight decay; never applied to LayerNorm weights or biases.
      beta_1, beta_2, epsilon: Adam moments and epsilon.
      bias_correction: apply Adam's bias correction (the reference does not).
      clip_norm: global-norm clipping of the cross-replica gradient; 0 disables.
    """

    name: str = "adamw"
    learning_rate: float = 5e-4
    warmup_steps: int = 10000
    warmup_fraction: float = 0.0
    decay_power: float = 1.0
    end_learning_rate: float = 0.0
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    bias_correction: bool = False
    clip_norm: float = 1.0

    def validate(self) -> None:
        _check_choice("optimizer.name", self.name, ("adamw", "lamb"))
        if self.learning_rate <= 0:
            raise ConfigError(f"optimizer.learning_rate={self.learning_rate} must be > 0")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Input data and tokenizer settings.

    Attributes:
      seq_length: fixed sequence length of every example (must match the TFRecords).
      vocab_path: WordPiece vocabulary file; empty means the packaged BERT uncased vocab.
      lower_case: lower-case and strip accents before WordPiece (uncased vocabularies).
      shuffle_buffer: examples held by the tf.data shuffle buffer.
      cycle_length: TFRecord files read in parallel.
    """

    seq_length: int = 128
    vocab_path: str = ""
    lower_case: bool = True
    shuffle_buffer: int = 10000
    cycle_length: int = 8


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training loop settings.

    Attributes:
      batch_size: global batch size (split across replicas).
      num_steps: total optimizer steps (T in the learning-rate schedule).
      seed: seed for initialization, masking, sampling, dropout and shuffling.
      accumulation_steps: micro-batches accumulated per optimizer step.
      steps_per_loop: optimizer steps per ``tf.function`` call (fewer host round trips; TPU
        100-1000, GPU 10-100); may change when resuming.
      log_every, checkpoint_every, eval_every: intervals in steps.
      eval_steps: validation batches per evaluation.
      keep_checkpoints: checkpoints kept by the checkpoint manager.
      mixed_precision: ``float32``, ``mixed_float16`` (GPU, with loss scaling) or
        ``mixed_bfloat16`` (TPU).
      jit_compile: compile the train step with XLA.
      deterministic: enable TF's deterministic ops (exact resume, reproducible numbers).
    """

    batch_size: int = 128
    num_steps: int = 1_000_000
    seed: int = 0
    accumulation_steps: int = 1
    steps_per_loop: int = 1
    log_every: int = 100
    checkpoint_every: int = 1000
    eval_every: int = 10000
    eval_steps: int = 100
    keep_checkpoints: int = 3
    mixed_precision: str = "float32"
    jit_compile: bool = False
    deterministic: bool = True

    def validate(self) -> None:
        _check_choice("train.mixed_precision", self.mixed_precision,
                      ("float32", "mixed_float16", "mixed_bfloat16"))
        for name in ("batch_size", "num_steps", "accumulation_steps", "steps_per_loop",
                     "log_every",
                     "checkpoint_every", "eval_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 1")
        if self.batch_size % self.accumulation_steps:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by "
                f"train.accumulation_steps={self.accumulation_steps}")
        if self.batch_size >= 2**24:  # example indices key the random streams in 24 bits
            raise ConfigError(f"train.batch_size={self.batch_size} must be < 2**24")


@dataclasses.dataclass(frozen=True)
class Config:
    """The pre-training configuration: one YAML file, one section per dataclass.

    Fine-tuning has its own, :class:`electra_tf.finetuning.config.FinetuningConfig`, which
    shares :class:`ModelConfig` and the tokenizer settings of ``data``.
    """

    model: ModelConfig = ModelConfig()
    generator: GeneratorConfig = GeneratorConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def validate(self) -> "Config":
        """Checks cross-field constraints; returns self so calls chain."""
        self.model.validate()
        self.objective.validate()
        self.optimizer.validate()
        self.train.validate()
        gen = self.generator_model
        if gen.hidden_size % gen.num_heads:
            raise ConfigError(
                f"generator hidden size {gen.hidden_size} is not divisible by its "
                f"{gen.num_heads} heads")
        if self.data.seq_length > self.model.max_position_embeddings:
            raise ConfigError(
                f"data.seq_length={self.data.seq_length} exceeds "
                f"model.max_position_embeddings={self.model.max_position_embeddings}")
        if not 1 <= self.max_predictions <= self.data.seq_length:
            raise ConfigError(
                f"max_predictions={self.max_predictions} must be within "
                f"[1, data.seq_length={self.data.seq_length}]")
        return self

    @property
    def max_predictions(self) -> int:
        """Positions predicted per sequence: explicit, or the reference's derivation."""
        if self.objective.max_predictions is not None:
            return self.objective.max_predictions
        return int((self.objective.mask_prob + 0.005) * self.data.seq_length)

    @property
    def generator_model(self) -> ModelConfig:
        """The generator's encoder config: the discriminator's with narrower width."""
        g = self.generator
        hidden = g.hidden_size or max(1, int(round(self.model.hidden_size * g.hidden_fraction)))
        return dataclasses.replace(
            self.model,
            hidden_size=hidden,
            num_heads=g.num_heads or max(1, hidden // 64),
            intermediate_size=g.intermediate_size or 4 * hidden,
        )


# ---------------------------------------------------------------------------------------------
# Strict loading from plain data.

def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")


def type_name(tp: Any) -> str:
    """A field type as a reader writes it: ``int``, ``Optional[int]``."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Returns ``value`` as type ``tp`` or raises ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return dataclass_from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads seeds=1 as int
            return str(value)
    raise ConfigError(f"{key}={value!r} has type {type(value).__name__}, expected {type_name(tp)}")


def dataclass_from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Builds the (nested) dataclass ``cls`` from plain data, strictly: an unknown key or a value
    of the wrong type is a :class:`ConfigError` naming the dotted key (``prefix`` + key)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys"
            f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}")
    return cls(**{k: _coerce(prefix + k, v, hints[k]) for k, v in data.items()})


def from_dict(data: dict) -> Config:
    """Builds a validated :class:`Config` from nested plain data (e.g. parsed YAML)."""
    return dataclass_from_dict(Config, data or {}).validate()


def to_dict(config: Config) -> dict:
    """Nested plain data for ``config``, including derived values under ``derived``."""
    out = dataclasses.asdict(config)
    out["derived"] = {
        "max_predictions": config.max_predictions,
        "generator_model": dataclasses.asdict(config.generator_model),
    }
    return out
