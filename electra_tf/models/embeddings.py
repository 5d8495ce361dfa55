"""Token, position and segment embeddings shared by the ELECTRA generator and discriminator."""

from __future__ import annotations

import keras
import tensorflow as tf

from electra_tf.config import ModelConfig
from electra_tf.models.layers import (SeededDropout, derive_seed, model_config_from_dict,
                                      model_config_to_dict, weight_initializer)


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraEmbeddings(keras.layers.Layer):
    """Word + position + segment embeddings, LayerNorm, dropout (reference ``embeddings``).

    One instance is shared by the generator and the discriminator (paper §3.2, "weight sharing":
    tying the embeddings only). The projection to each encoder's hidden width is owned by the
    encoder, not by this layer.

    Args:
      model_config: :class:`~electra_tf.config.ModelConfig`; uses ``vocab_size``,
        ``embedding_size``, ``max_position_embeddings``, ``type_vocab_size``,
        ``layer_norm_epsilon``, ``dropout_rate`` and ``initializer_range``.
      seed: seed of this layer's initializers and dropout stream.

    Call args:
      token_ids: int [batch, seq].
      segment_ids: int [batch, seq].
      training: Python bool, enables dropout.

    Returns:
      [batch, seq, embedding_size] in the layer's compute dtype.

    Weights (checkpoint names): ``word_embeddings`` [vocab, E], ``position_embeddings``
    [max_position, E], ``segment_embeddings`` [type_vocab, E], ``layer_norm/{gamma,beta}``.
    """

    def __init__(self, model_config: ModelConfig | dict, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "embeddings")
        super().__init__(**kwargs)
        self.model_config = model_config_from_dict(model_config)
        self.seed = int(seed)
        cfg = self.model_config
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=cfg.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.dropout = SeededDropout(
            cfg.dropout_rate, derive_seed(self.seed, "dropout"), dtype=self.dtype_policy,
            name="dropout")

    def build(self, token_ids_shape=None, segment_ids_shape=None):
        cfg = self.model_config
        self.word_embeddings = self.add_weight(
            shape=(cfg.vocab_size, cfg.embedding_size), name="word_embeddings",
            initializer=weight_initializer(cfg, self.seed, "word_embeddings"),
            autocast=False)
        self.position_embeddings = self.add_weight(
            shape=(cfg.max_position_embeddings, cfg.embedding_size), name="position_embeddings",
            initializer=weight_initializer(cfg, self.seed, "position_embeddings"),
            autocast=False)
        self.segment_embeddings = self.add_weight(
            shape=(cfg.type_vocab_size, cfg.embedding_size), name="segment_embeddings",
            initializer=weight_initializer(cfg, self.seed, "segment_embeddings"),
            autocast=False)
        self.layer_norm.build((None, None, cfg.embedding_size))
        self.dropout.build()
        self.built = True

    def call(self, token_ids, segment_ids, training=None):
        seq_length = tf.shape(token_ids)[1]
        # The tables do not autocast: gather rows from float32 and cast only those rows (mixed
        # precision), instead of casting a [vocab, E] table on every call.
        x = tf.gather(self.word_embeddings.value, token_ids)
        x += tf.gather(self.segment_embeddings.value, segment_ids)
        x += self.position_embeddings.value[tf.newaxis, :seq_length]
        x = tf.cast(x, self.compute_dtype)
        return self.dropout(self.layer_norm(x), training=training)

    def compute_output_shape(self, token_ids_shape, segment_ids_shape=None):
        return tuple(token_ids_shape) + (self.model_config.embedding_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"model_config": model_config_to_dict(self.model_config),
                       "seed": self.seed})
        return config
