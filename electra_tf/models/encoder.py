"""The BERT-style post-LayerNorm transformer encoder used by both ELECTRA networks.

The encoder knows nothing about any objective: generator, discriminator and classifier are
heads on top of it (``electra_tf.models.heads``). It follows google-research/electra
``model/modeling.py`` (``BertModel`` / ``transformer_model``) operation by operation:
embeddings → optional ``embeddings_project`` → N × [self-attention → dense → dropout →
residual → LayerNorm → dense(GELU) → dense → dropout → residual → LayerNorm].

keras-hub's ``TransformerEncoder`` is not used: it has a single dropout rate for attention
probabilities and hidden states (the reference has two), clones one seeded initializer for
every kernel (identical Q/K/V initial weights under a fixed seed), and its dropout streams are
not derived from a config seed.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from electra_tf.config import ModelConfig
from electra_tf.models import kernels
from electra_tf.models.embeddings import ElectraEmbeddings
from electra_tf.models.layers import (SeededDropout, derive_seed, deserialize_nested,
                                      model_config_from_dict, model_config_to_dict,
                                      serialize_nested, weight_initializer)

# The reference adds -10000 to the attention logits of padding positions (modeling.py).
_MASK_ADDER = -10000.0


def activation_fn(name: str):
    """``gelu`` (exact erf, as the reference ``modeling.gelu``), ``gelu_approximate`` (tanh,
    as keras-hub and BERT's TF2 ports) or ``relu``."""
    if name == "gelu":
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name == "gelu_approximate":
        return lambda x: keras.activations.gelu(x, approximate=True)
    if name == "relu":
        return keras.activations.relu
    raise ValueError(f"model.activation={name!r} is not one of gelu, gelu_approximate, relu")


@keras.saving.register_keras_serializable(package="electra_tf")
class TransformerLayer(keras.layers.Layer):
    """One post-LayerNorm transformer block (reference ``transformer_model`` loop body).

    Args:
      model_config: uses ``hidden_size``, ``num_heads``, ``intermediate_size``,
        ``dropout_rate``, ``attention_dropout_rate``, ``activation``, ``layer_norm_epsilon``,
        ``initializer_range``.
      seed: seed of this layer's initializers and dropout streams.

    Call args:
      x: [batch, seq, hidden].
      attention_bias: [batch, 1, 1, seq], 0 on tokens and -10000 on padding.
      training: Python bool, enables dropout.

    Returns:
      [batch, seq, hidden].

    Sub-layers (checkpoint names): ``query``, ``key``, ``value``, ``attention_output``,
    ``attention_layer_norm``, ``intermediate``, ``output_dense``, ``output_layer_norm``.
    """

    def __init__(self, model_config: ModelConfig | dict, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.model_config = cfg = model_config_from_dict(model_config)
        self.seed = int(seed)
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size={cfg.hidden_size} is not divisible by "
                             f"num_heads={cfg.num_heads}")
        self.head_size = cfg.hidden_size // cfg.num_heads

        def dense(units, name, activation=None):
            return keras.layers.Dense(
                units, activation=activation, name=name, dtype=self.dtype_policy,
                kernel_initializer=weight_initializer(cfg, self.seed, name))

        def layer_norm(name):
            return keras.layers.LayerNormalization(
                epsilon=cfg.layer_norm_epsilon, name=name, dtype=self.dtype_policy)

        def dropout(rate, name):
            return SeededDropout(rate, derive_seed(self.seed, name), name=name,
                                 dtype=self.dtype_policy)

        self.query = dense(cfg.hidden_size, "query")
        self.key = dense(cfg.hidden_size, "key")
        self.value = dense(cfg.hidden_size, "value")
        self.attention_dropout = dropout(cfg.attention_dropout_rate, "attention_dropout")
        self.attention_output = dense(cfg.hidden_size, "attention_output")
        self.attention_output_dropout = dropout(cfg.dropout_rate, "attention_output_dropout")
        self.attention_layer_norm = layer_norm("attention_layer_norm")
        # The activation is applied in call, where training uses kernels.gelu.
        self.intermediate = dense(cfg.intermediate_size, "intermediate")
        self.activation = activation_fn(cfg.activation)
        self.output_dense = dense(cfg.hidden_size, "output_dense")
        self.output_dropout = dropout(cfg.dropout_rate, "output_dropout")
        self.output_layer_norm = layer_norm("output_layer_norm")

    def build(self, x_shape, attention_bias_shape=None):
        hidden = self.model_config.hidden_size
        shape = (None, None, hidden)
        for layer in (self.query, self.key, self.value, self.attention_output,
                      self.attention_layer_norm, self.intermediate, self.output_layer_norm):
            layer.build(shape)
        self.output_dense.build((None, None, self.model_config.intermediate_size))
        for dropout in (self.attention_dropout, self.attention_output_dropout,
                        self.output_dropout):
            dropout.build()
        self.built = True

    def _split_heads(self, x):
        """[batch, seq, hidden] → [batch, heads, seq, head_size]."""
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [batch, seq, self.model_config.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, x, attention_bias, training=None):
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        # Scaling the queries instead of the [seq, seq] scores: the same math, fewer multiplies.
        query = self._split_heads(self.query(x) * (self.head_size ** -0.5))
        key = self._split_heads(self.key(x))
        value = self._split_heads(self.value(x))
        scores = tf.matmul(query, key, transpose_b=True) + tf.cast(attention_bias, x.dtype)
        # Softmax in float32 even under mixed precision (as keras MultiHeadAttention).
        probs = tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32)), x.dtype)
        probs = self.attention_dropout(probs, training=training)
        context = tf.transpose(tf.matmul(probs, value), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, seq, self.model_config.hidden_size])
        attended = self.attention_output_dropout(self.attention_output(context), training=training)
        x = self.attention_layer_norm(attended + x)
        hidden = self.intermediate(x)
        # Training runs the fused XLA kernel; inference the plain ops (no XLA in SavedModels).
        if training and self.model_config.activation == "gelu":
            hidden = kernels.gelu(hidden)
        else:
            hidden = self.activation(hidden)
        out = self.output_dropout(self.output_dense(hidden), training=training)
        return self.output_layer_norm(out + x)

    def compute_output_shape(self, x_shape, attention_bias_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": model_config_to_dict(self.model_config),
                       "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraEncoder(keras.Model):
    """Embeddings (possibly shared) → projection → ``num_layers`` transformer layers.

    Args:
      model_config: the encoder's :class:`~electra_tf.config.ModelConfig` (``config.model``
        for the discriminator and fine-tuning, ``config.generator_model`` for the generator).
      embeddings: an :class:`~electra_tf.models.embeddings.ElectraEmbeddings` to share; when None
        the encoder creates its own (a stand-alone backbone for fine-tuning).
      seed: seed of the initializers and dropout streams (of the embeddings too when the
        encoder creates them).

    Call args:
      inputs: dict with ``token_ids``, ``segment_ids``, ``padding_mask``, each int [batch, seq].
      training: Python bool, enables dropout.

    Returns:
      sequence output [batch, seq, hidden_size].

    Example:
      >>> from electra_tf.config_io import load_config
      >>> cfg = load_config("debug_tiny")
      >>> encoder = ElectraEncoder(cfg.model, seed=1)
      >>> ids = tf.constant([[101, 7592, 102, 0]])
      >>> encoder({"token_ids": ids, "segment_ids": tf.zeros_like(ids),
      ...          "padding_mask": tf.cast(ids != 0, tf.int32)}).shape
      TensorShape([1, 4, 32])
    """

    def __init__(self, model_config: ModelConfig | dict,
                 embeddings: Optional[ElectraEmbeddings] = None, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "electra_encoder")
        super().__init__(**kwargs)
        self.model_config = cfg = model_config_from_dict(model_config)
        self.seed = int(seed)
        self.embeddings = embeddings if embeddings is not None else ElectraEmbeddings(
            cfg, seed=derive_seed(self.seed, "embeddings"), dtype=self.dtype_policy,
            name="embeddings")
        if self.embeddings.model_config.embedding_size != cfg.embedding_size:
            raise ValueError(
                f"{self.name}: shared embeddings have embedding_size="
                f"{self.embeddings.model_config.embedding_size}, the config says "
                f"{cfg.embedding_size}")
        self.embeddings_project = None
        if cfg.embedding_size != cfg.hidden_size:
            # tf.layers.dense without an initializer in the reference: Glorot uniform.
            self.embeddings_project = keras.layers.Dense(
                cfg.hidden_size, name="embeddings_project", dtype=self.dtype_policy,
                kernel_initializer=keras.initializers.GlorotUniform(
                    derive_seed(self.seed, "embeddings_project")))
        # One attribute per layer (layer_0, layer_1, ...), not a list: tf.train.Checkpoint does
        # not see into Keras 3's tracked lists, and these attribute names are the checkpoint
        # names ("generator/layer_3/query/...").
        for i in range(cfg.num_layers):
            setattr(self, f"layer_{i}", TransformerLayer(
                cfg, seed=derive_seed(self.seed, f"layer_{i}"), name=f"layer_{i}",
                dtype=self.dtype_policy))

    @property
    def transformer_layers(self) -> list[TransformerLayer]:
        """The transformer layers, bottom first (layer i has depth i + 1 for layer-wise LR)."""
        return [getattr(self, f"layer_{i}") for i in range(self.model_config.num_layers)]

    def build(self, inputs_shape=None):
        cfg = self.model_config
        if not self.embeddings.built:
            self.embeddings.build()
        if self.embeddings_project is not None:
            self.embeddings_project.build((None, None, cfg.embedding_size))
        for layer in self.transformer_layers:
            layer.build((None, None, cfg.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        x = self.embeddings(inputs["token_ids"], inputs["segment_ids"], training=training)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        mask = tf.cast(inputs["padding_mask"], self.compute_dtype)
        attention_bias = ((1.0 - mask) * _MASK_ADDER)[:, tf.newaxis, tf.newaxis, :]
        for layer in self.transformer_layers:
            x = layer(x, attention_bias, training=training)
        return x

    def embedding_variables(self) -> list:
        """Variables at depth 0 for layer-wise LR decay: embeddings (+ projection)."""
        variables = list(self.embeddings.trainable_variables)
        if self.embeddings_project is not None:
            variables += self.embeddings_project.trainable_variables
        return variables

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape["token_ids"]) + (self.model_config.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": model_config_to_dict(self.model_config),
                       **serialize_nested(embeddings=self.embeddings), "seed": self.seed})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, "embeddings"))
