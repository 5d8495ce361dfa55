"""Heads on top of :class:`~electra_tf.models.encoder.ElectraEncoder`: generator MLM,
discriminator replaced-token detection, and sequence classification; and
:class:`MaskedLanguageModel`, an encoder with its MLM head (the saved form of a generator).

Each head mirrors a scope of google-research/electra: ``generator_predictions``
(``_get_masked_lm_output``), ``discriminator_predictions`` (``_get_discriminator_output``) and
the fine-tuning classifier (``finetune/classification``). Logits are returned in float32 so
losses are computed in float32 under mixed precision.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from electra_tf.config import ModelConfig
from electra_tf.models.embeddings import ElectraEmbeddings
from electra_tf.models.encoder import ElectraEncoder, activation_fn
from electra_tf.models.layers import (SeededDropout, derive_seed, deserialize_nested,
                                      model_config_from_dict, model_config_to_dict,
                                      serialize_nested, weight_initializer)


@keras.saving.register_keras_serializable(package="electra_tf")
class MaskedLMHead(keras.layers.Layer):
    """Generator head: dense → activation → LayerNorm → logits tied to the word embeddings.

    Evaluated only at the ``max_predictions`` masked positions (gathered first): the
    vocabulary projection is the most expensive matmul of the generator, and the reference
    also gathers before projecting (``pretrain_helpers.gather_positions``).

    Args:
      model_config: the generator's config (``dense`` maps its ``hidden_size`` to
        ``embedding_size``; uses ``activation``, ``layer_norm_epsilon``, ``initializer_range``).
      embeddings: the shared :class:`ElectraEmbeddings` whose ``word_embeddings`` table is
        the output projection (transposed), so the table is one variable.
      seed: seed of the initializers.

    Call args:
      sequence_output: [batch, seq, hidden].
      positions: int [batch, predictions], positions to predict.

    Returns:
      logits, float32 [batch, predictions, vocab_size].

    Weights (checkpoint names): ``dense``, ``layer_norm``, ``output_bias`` [vocab].
    """

    def __init__(self, model_config: ModelConfig | dict, embeddings: ElectraEmbeddings,
                 seed: int = 0, **kwargs):
        kwargs.setdefault("name", "mlm_head")
        super().__init__(**kwargs)
        self.model_config = cfg = model_config_from_dict(model_config)
        self.embeddings = embeddings
        self.seed = int(seed)
        self.dense = keras.layers.Dense(
            embeddings.model_config.embedding_size, activation=activation_fn(cfg.activation),
            kernel_initializer=weight_initializer(cfg, self.seed, "dense"),
            dtype=self.dtype_policy, name="dense")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=cfg.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")

    def build(self, sequence_output_shape=None, positions_shape=None):
        cfg = self.model_config
        if not self.embeddings.built:
            self.embeddings.build()
        self.dense.build((None, None, cfg.hidden_size))
        self.layer_norm.build((None, None, self.embeddings.model_config.embedding_size))
        self.output_bias = self.add_weight(
            shape=(self.embeddings.model_config.vocab_size,), initializer="zeros",
            name="output_bias", autocast=False)  # added to float32 logits
        self.built = True

    def call(self, sequence_output, positions):
        hidden = tf.gather(sequence_output, positions, batch_dims=1)  # [batch, predictions, H]
        hidden = self.layer_norm(self.dense(hidden))
        table = tf.cast(self.embeddings.word_embeddings.value, hidden.dtype)
        # einsum runs one 2-D matmul; tf.matmul of a rank-3 input with the rank-2 table
        # broadcasts the table over the batch and was 4× slower here (CPU, b32 × 9 × 30522).
        logits = tf.einsum("bpe,ve->bpv", hidden, table)
        return tf.cast(logits, tf.float32) + self.output_bias.value

    def compute_output_shape(self, sequence_output_shape, positions_shape):
        return tuple(positions_shape) + (self.embeddings.model_config.vocab_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": model_config_to_dict(self.model_config),
                       **serialize_nested(embeddings=self.embeddings), "seed": self.seed})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, "embeddings"))


@keras.saving.register_keras_serializable(package="electra_tf")
class ReplacedTokenHead(keras.layers.Layer):
    """Discriminator head: dense(hidden) → activation → dense(1), one logit per token.

    Args:
      model_config: the discriminator's config.
      seed: seed of the initializers. The first dense uses the truncated normal of the
        reference; the logit layer uses Glorot uniform, as the reference's
        ``tf.layers.dense(hidden, units=1)`` without an initializer.

    Call args:
      sequence_output: [batch, seq, hidden].

    Returns:
      logits, float32 [batch, seq]; positive means "replaced".

    Weights (checkpoint names): ``dense``, ``logits``.
    """

    def __init__(self, model_config: ModelConfig | dict, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "rtd_head")
        super().__init__(**kwargs)
        self.model_config = cfg = model_config_from_dict(model_config)
        self.seed = int(seed)
        self.dense = keras.layers.Dense(
            cfg.hidden_size, activation=activation_fn(cfg.activation),
            kernel_initializer=weight_initializer(cfg, self.seed, "dense"),
            dtype=self.dtype_policy, name="dense")
        self.logits = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.GlorotUniform(
                derive_seed(self.seed, "logits")),
            dtype=self.dtype_policy, name="logits")

    def build(self, sequence_output_shape=None):
        self.dense.build((None, None, self.model_config.hidden_size))
        self.logits.build((None, None, self.model_config.hidden_size))
        self.built = True

    def call(self, sequence_output):
        logits = self.logits(self.dense(sequence_output))
        return tf.cast(tf.squeeze(logits, -1), tf.float32)

    def compute_output_shape(self, sequence_output_shape):
        return tuple(sequence_output_shape)[:-1]

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": model_config_to_dict(self.model_config),
                       "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="electra_tf")
class ClassificationHead(keras.layers.Layer):
    """Sequence classifier: first token ([CLS]) → dropout → dense(num_outputs).

    As the reference fine-tuning head (``finetune/classification``): no pooler layer, and a
    kernel initialised glorot-uniform (the reference's ``tf.layers.dense(reprs, num_labels)``
    passes no initializer, so TF1's default for variables applies), bias zeros.

    Args:
      num_outputs: number of classes (1 for regression).
      dropout_rate: dropout on the [CLS] vector (``config.finetune.dropout_rate``).
      initializer_range: None (the default): glorot-uniform kernel, as the reference; a float:
        a truncated-normal kernel with that stddev, as the encoder's weights (BERT's
        ``create_initializer``; what this head used before it followed the reference).
      seed: seed of the initializer and the dropout stream.

    Call args:
      sequence_output: [batch, seq, hidden].
      training: Python bool, enables dropout.

    Returns:
      logits, float32 [batch, num_outputs].

    Weights (checkpoint names): ``dense``.
    """

    def __init__(self, num_outputs: int, dropout_rate: float = 0.1,
                 initializer_range: float | None = None, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "classification_head")
        super().__init__(**kwargs)
        self.num_outputs = int(num_outputs)
        self.dropout_rate = float(dropout_rate)
        self.initializer_range = None if initializer_range is None else float(initializer_range)
        self.seed = int(seed)
        self.dropout = SeededDropout(self.dropout_rate, derive_seed(self.seed, "dropout"),
                                     dtype=self.dtype_policy, name="dropout")
        kernel_seed = derive_seed(self.seed, "dense")
        self.dense = keras.layers.Dense(
            self.num_outputs, dtype=self.dtype_policy, name="dense",
            kernel_initializer=keras.initializers.GlorotUniform(seed=kernel_seed)
            if self.initializer_range is None else keras.initializers.TruncatedNormal(
                stddev=self.initializer_range, seed=kernel_seed))

    def build(self, sequence_output_shape):
        self.dense.build((None, sequence_output_shape[-1]))
        self.dropout.build()
        self.built = True

    def call(self, sequence_output, training=None):
        first = self.dropout(sequence_output[:, 0, :], training=training)
        return tf.cast(self.dense(first), tf.float32)

    def compute_output_shape(self, sequence_output_shape):
        return (sequence_output_shape[0], self.num_outputs)

    def get_config(self):
        config = super().get_config()
        config.update({"num_outputs": self.num_outputs, "dropout_rate": self.dropout_rate,
                       "initializer_range": self.initializer_range, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="electra_tf")
class MaskedLanguageModel(keras.Model):
    """An encoder with its :class:`MaskedLMHead`: the form in which a generator is saved.

    Call args:
      inputs: dict with ``token_ids``, ``segment_ids``, ``padding_mask`` and ``positions``
        (int [batch, predictions]).

    Returns:
      logits, float32 [batch, predictions, vocab_size].
    """

    def __init__(self, encoder: ElectraEncoder, head: MaskedLMHead, **kwargs):
        kwargs.setdefault("name", "masked_lm")
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head
        self.build()

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        if not self.head.built:
            self.head.build((None, None, self.encoder.model_config.hidden_size), (None, None))
        self.built = True

    def call(self, inputs, training=None):
        return self.head(self.encoder(inputs, training=training), inputs["positions"])

    def get_config(self):
        # The head's embeddings are the encoder's: written once, rebuilt once (one word table).
        config = super().get_config()
        config.update(serialize_nested(encoder=self.encoder, head=self.head))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, "encoder", "head"))
