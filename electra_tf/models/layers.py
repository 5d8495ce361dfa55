"""Building blocks every ELECTRA layer uses: seeds, initializers, config serialization, dropout.

This is the bottom of the model stack (the embeddings, the encoder and the heads import from
here):

* :func:`derive_seed` turns ``config.train.seed`` plus a stable name path into the seed of one
  initializer or dropout stream, so two builds with the same seed have identical weights and
  identical dropout masks, independent of Keras' global RNG and of layer-name counters.
* :func:`serialize_nested` / :func:`deserialize_nested`, the ``get_config`` / ``from_config``
  of layers that hold other layers, which write an object held twice (the shared embeddings)
  once and rebuild it once.
* :class:`SeededDropout`, dropout whose stream is a ``keras.random.SeedGenerator`` seeded from
  :func:`derive_seed`, with the replica id mixed in so that replicas of a
  ``MirroredStrategy`` draw different masks (a plain Keras ``Dropout`` under MirroredStrategy
  has one mirrored seed state and therefore drops the *same* positions on every replica).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from typing import Any, Optional

import keras
import tensorflow as tf

from electra_tf.config import ModelConfig
from electra_tf.models import kernels


def derive_seed(seed: int, *names: Any) -> int:
    """A stable 31-bit seed for the random stream called ``names`` under ``seed``.

    Args:
      seed: the base seed (``config.train.seed`` or a seed derived from it).
      *names: a path naming the stream, e.g. ``("discriminator", "layer_3", "query")``.

    Returns:
      An int in [0, 2**31): the same for the same arguments in every process (SHA-256 based,
      unlike Python's salted ``hash``).
    """
    text = "/".join(str(part) for part in (seed, *names))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def weight_initializer(config: ModelConfig, seed: int,
                       *names: Any) -> keras.initializers.Initializer:
    """Truncated normal with stddev ``initializer_range`` (reference ``create_initializer``).

    Keras initializers with an integer seed return the same values on every call, so each
    variable gets its own derived seed.
    """
    return keras.initializers.TruncatedNormal(
        stddev=config.initializer_range, seed=derive_seed(seed, *names))


def model_config_to_dict(config: ModelConfig) -> dict:
    """JSON-ready form of a :class:`ModelConfig` for ``get_config``."""
    return dataclasses.asdict(config)


def model_config_from_dict(data: dict | ModelConfig) -> ModelConfig:
    """Inverse of :func:`model_config_to_dict`; passes a ModelConfig through unchanged."""
    if isinstance(data, ModelConfig):
        return data
    return ModelConfig(**data)


class _Sharing(threading.local):
    """The state of one outermost ``get_config`` (or ``from_config``) and all it nests."""

    def __init__(self):
        self.registry: Optional[dict] = None  # id(object) -> path, or path -> object
        self.keys: list[str] = []  # the config keys from the outermost object to this one

    @contextlib.contextmanager
    def scope(self):
        """The registry, opened by the outermost call and joined by nested ones."""
        outermost = self.registry is None
        if outermost:
            self.registry = {}
        try:
            yield self.registry
        finally:
            if outermost:
                self.registry = None

    @contextlib.contextmanager
    def under(self, key: str):
        self.keys.append(key)
        try:
            yield
        finally:
            self.keys.pop()

    def path(self, key: str) -> str:
        return "/".join((*self.keys, key))


_SERIALIZING, _DESERIALIZING = _Sharing(), _Sharing()
# Written in place of the config of an object met before: {"same_as": "generator/embeddings"}.
_SAME_AS = "same_as"


def serialize_nested(**objects: Optional[keras.layers.Layer]) -> dict:
    """The configs of the layers a layer holds, for its ``get_config``.

    Keras writes a nested object's config wherever it is held and rebuilds one object per copy:
    a generator and an MLM head that share one embeddings layer came back with two, and the
    head's output projection was no longer the encoder's word table. Here an object is written
    in full where it is met first; every later holder gets ``{"same_as": PATH}``, the config
    keys leading to the first (e.g. ``"encoder/embeddings"``), counted from the outermost
    ``get_config`` that calls this function.

    Args:
      **objects: the held layers by config key (None stays None).

    Returns:
      ``{key: Keras config, reference or None}`` in the order given; :func:`deserialize_nested`
      reads the keys in that order, so an object is rebuilt before any reference to it.
    """
    configs = {}
    with _SERIALIZING.scope() as paths:
        for key, obj in objects.items():
            if obj is None:
                configs[key] = None
            elif id(obj) in paths:
                configs[key] = {_SAME_AS: paths[id(obj)]}
            else:
                with _SERIALIZING.under(key):
                    configs[key] = keras.saving.serialize_keras_object(obj)
                paths[id(obj)] = _SERIALIZING.path(key)
    return configs


def deserialize_nested(config: dict, *keys: str) -> dict:
    """The inverse of :func:`serialize_nested`, for a ``from_config``.

    Args:
      config: the layer's config.
      *keys: the keys :func:`serialize_nested` wrote, in the same order.

    Returns:
      A copy of ``config`` with those keys rebuilt, one object per ``same_as`` group. The
      objects are not built: their holder builds them in its own ``build``, under its name
      scope, so variable paths (and with them optimizer slot names and seed-generator keys) are
      the original's.

    Raises:
      ValueError: a reference to an object that was not rebuilt before it.
    """
    config = dict(config)
    with _DESERIALIZING.scope() as objects:
        for key in keys:
            value = config.get(key)
            if value is None:
                continue
            path = _DESERIALIZING.path(key)
            if _SAME_AS in value:
                if value[_SAME_AS] not in objects:
                    raise ValueError(f"config key {path} refers to {value[_SAME_AS]}, which is not "
                                     f"rebuilt before it (rebuilt so far: {sorted(objects)})")
                config[key] = objects[value[_SAME_AS]]
                continue
            with _DESERIALIZING.under(key):
                config[key] = keras.saving.deserialize_keras_object(
                    {k: v for k, v in value.items() if k != "build_config"})
            objects[path] = config[key]
    return config


@keras.saving.register_keras_serializable(package="electra_tf")
class SeededDropout(keras.layers.Layer):
    """Dropout with a deterministic, checkpointable, replica-aware random stream.

    Each training call draws the next seed from its ``SeedGenerator`` (state ``[seed, calls]``),
    adds the replica id (0 outside a strategy) and applies ``kernels.dropout`` keyed on it.
    The state variable is *not* tracked by ``tf.train.Checkpoint`` through the layer (Keras 3
    does not track seed generators); ``ElectraPretrainer.seed_generator_variables()`` exposes
    all of them for checkpoints.

    Args:
      rate: fraction of units dropped, in [0, 1).
      seed: seed of this layer's stream (see :func:`derive_seed`).

    Call args:
      inputs: any float tensor.
      training: Python bool; dropout is applied only when true and ``rate > 0``.
    """

    def __init__(self, rate: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{self.name}: dropout rate {rate} must be within [0, 1)")
        self.rate = float(rate)
        self.seed = int(seed)
        self.supports_masking = True
        self.seed_generator = None

    def build(self, input_shape=None):
        # Created in build so the state's variable path names its owner
        # (".../layer_0/attention_dropout/seed_generator/seed_generator_state"); no stream
        # (and no state to checkpoint) when the layer can never drop anything.
        if self.rate:
            self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed_generator")
        self.built = True

    def call(self, inputs, training=None):
        if not training or not self.rate:
            return inputs
        seed = self.seed_generator.next()  # int64 [derived seed < 2**31, call count]
        context = tf.distribute.get_replica_context()
        replica_id = context.replica_id_in_sync_group if context is not None else 0
        # The replica id goes into the high word of the first seed: a distinct key per replica.
        seed += tf.constant([1 << 32, 0], tf.int64) * tf.cast(replica_id, tf.int64)
        return kernels.dropout(inputs, self.rate, kernels.seed_key(seed))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
