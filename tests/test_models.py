"""Embeddings, encoder, heads and the saved pre-trained format (debug_tiny sizes)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from electra_tf.config_io import load_config
from electra_tf.models.embeddings import ElectraEmbeddings
from electra_tf.models.encoder import ElectraEncoder, TransformerLayer
from electra_tf.models.heads import (ClassificationHead, MaskedLanguageModel, MaskedLMHead,
                                     ReplacedTokenHead)
from electra_tf.models.layers import SeededDropout, derive_seed, deserialize_nested
from electra_tf.models.pretrained import load_generator, load_pretrained, save_pretrained
from electra_tf.objective.pretrainer import ElectraPretrainer, build_pretrainer
from electra_tf.tokenizer import TokenizerError

CONFIG = load_config("debug_tiny")
SPECIAL = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def _inputs(ids):
    ids = tf.constant(ids, tf.int32)
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids),
            "padding_mask": tf.cast(ids != 0, tf.int32)}


INPUTS = _inputs([[101, 7592, 2088, 1010, 102, 0, 0, 0],
                  [101, 2023, 2003, 102, 1037, 3231, 102, 0]])


@pytest.fixture(scope="module")
def pretrainer():
    return build_pretrainer(CONFIG, SPECIAL)


def test_shapes_and_shared_embeddings_are_one_variable(pretrainer):
    hidden = pretrainer.discriminator(INPUTS)
    assert hidden.shape == (2, 8, CONFIG.model.hidden_size)
    assert pretrainer.generator(INPUTS).shape == (2, 8, CONFIG.generator_model.hidden_size)
    table = pretrainer.embeddings.word_embeddings
    assert pretrainer.generator.embeddings is pretrainer.discriminator.embeddings
    assert pretrainer.mlm_head.embeddings.word_embeddings is table
    assert sum(v is table for v in pretrainer.trainable_variables) == 1
    ids = [id(v) for v in pretrainer.trainable_variables]
    assert len(ids) == len(set(ids))
    # Each encoder owns its projection (embedding 16 → hidden 32; the generator's is 16 → 16).
    assert pretrainer.discriminator.embeddings_project.kernel.shape == (16, 32)
    assert pretrainer.generator.embeddings_project is None
    logits = pretrainer.mlm_head(pretrainer.generator(INPUTS), tf.constant([[1, 2], [3, 5]]))
    assert logits.shape == (2, 2, CONFIG.model.vocab_size) and logits.dtype == tf.float32
    assert pretrainer.rtd_head(hidden).shape == (2, 8)


def test_mlm_logits_are_the_tied_table_projection(pretrainer):
    head = pretrainer.mlm_head
    hidden = pretrainer.generator(INPUTS)
    positions = tf.constant([[1, 3], [2, 4]])
    gathered = tf.gather(hidden, positions, batch_dims=1)
    expected = (head.layer_norm(head.dense(gathered)).numpy()
                @ pretrainer.embeddings.word_embeddings.numpy().T + head.output_bias.numpy())
    np.testing.assert_allclose(head(hidden, positions).numpy(), expected, atol=1e-5)


def _numpy_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _numpy_layer_norm(x, layer):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * layer.gamma.numpy() + layer.beta.numpy()


def test_transformer_layer_matches_a_numpy_reference_with_exact_gelu():
    layer = TransformerLayer(CONFIG.model, seed=7)
    x = np.random.default_rng(0).normal(size=(2, 5, 32)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
    out = layer(tf.constant(x), tf.constant(bias)).numpy()

    def dense(d, v):
        return v @ d.kernel.numpy() + d.bias.numpy()

    def heads(v):
        return v.reshape(2, 5, 2, 16).transpose(0, 2, 1, 3)

    q, k, v = (heads(dense(d, x)) for d in (layer.query, layer.key, layer.value))
    scores = q @ k.transpose(0, 1, 3, 2) / 4.0 + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(2, 5, 32)
    attended = _numpy_layer_norm(dense(layer.attention_output, context) + x,
                                 layer.attention_layer_norm)
    ffn = dense(layer.output_dense, _numpy_gelu(dense(layer.intermediate, attended)))
    expected = _numpy_layer_norm(ffn + attended, layer.output_layer_norm)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_padding_does_not_change_real_positions():
    encoder = ElectraEncoder(CONFIG.model, seed=3)
    a = _inputs([[101, 7592, 2088, 102, 0, 0]])
    b = _inputs([[101, 7592, 2088, 102, 0, 0]])
    b["token_ids"] = tf.constant([[101, 7592, 2088, 102, 999, 5]])  # junk under padding
    np.testing.assert_allclose(encoder(a).numpy()[:, :4], encoder(b).numpy()[:, :4], atol=1e-5)


def test_same_seed_same_weights_and_dropout_other_seed_differs():
    def build(seed):
        config = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, seed=seed))
        model = build_pretrainer(config, SPECIAL)
        return model, model.get_weights()

    (m1, w1), (m2, w2), (_, w3) = build(5), build(5), build(6)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert not np.array_equal(w1[0], w3[0])
    # Identical dropout streams: two training-mode calls each, equal pairwise, different in time.
    first = [m.discriminator(INPUTS, training=True).numpy() for m in (m1, m2)]
    second = [m.discriminator(INPUTS, training=True).numpy() for m in (m1, m2)]
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(second[0], second[1])
    assert not np.allclose(first[0], second[0])


def test_initializer_is_truncated_normal_with_initializer_range():
    encoder = ElectraEncoder(dataclasses.replace(CONFIG.model, hidden_size=256, num_heads=4,
                                                 intermediate_size=1024), seed=11)
    encoder.build()
    kernel = encoder.transformer_layers[0].intermediate.kernel.numpy()
    assert np.abs(kernel).max() <= 2 * 0.02 + 1e-7  # truncated at two standard deviations
    # Truncated at ±2σ the standard deviation is 0.88σ.
    assert abs(kernel.std() - 0.88 * 0.02) < 0.001
    np.testing.assert_array_equal(
        encoder.transformer_layers[0].output_layer_norm.gamma.numpy(), 1.0)
    q = encoder.transformer_layers[0].query.kernel.numpy()
    k = encoder.transformer_layers[0].key.kernel.numpy()
    assert not np.array_equal(q, k)  # every kernel has its own seed


def test_activation_switch_changes_outputs():
    exact = ElectraEncoder(CONFIG.model, seed=1)
    tanh = ElectraEncoder(dataclasses.replace(CONFIG.model, activation="gelu_approximate"), seed=1)
    difference = np.abs(exact(INPUTS).numpy() - tanh(INPUTS).numpy()).max()
    assert 0 < difference < 0.05


def test_layerwise_groups_partition_the_encoder():
    encoder = ElectraEncoder(CONFIG.model, seed=1)
    grouped = [id(v) for v in encoder.embedding_variables()]
    grouped += [id(v) for layer in encoder.transformer_layers for v in layer.trainable_variables]
    assert sorted(grouped) == sorted(id(v) for v in encoder.trainable_variables)
    assert [layer.name for layer in encoder.transformer_layers] == ["layer_0", "layer_1"]


def test_dropout_is_deterministic_and_rejects_bad_rates():
    layer = SeededDropout(0.5, seed=3)
    x = tf.ones([4, 16])
    a, b = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    fresh = SeededDropout(0.5, seed=3)
    np.testing.assert_array_equal(fresh(x, training=True).numpy(), a)
    assert not np.array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0}
    np.testing.assert_array_equal(layer(x, training=False), x)
    with pytest.raises(ValueError, match="dropout rate 1.0"):
        SeededDropout(1.0, seed=1)


def test_every_layer_and_model_round_trips_its_config(pretrainer, assert_config_round_trip):
    embeddings = ElectraEmbeddings(CONFIG.model, seed=2)
    for obj in (SeededDropout(0.1, seed=4), embeddings, TransformerLayer(CONFIG.model, seed=3),
                ElectraEncoder(CONFIG.model, seed=9),
                ElectraEncoder(CONFIG.generator_model, embeddings=embeddings, seed=9),
                MaskedLMHead(CONFIG.generator_model, embeddings, seed=5),
                ReplacedTokenHead(CONFIG.model, seed=6), ClassificationHead(3, 0.1, 0.02, seed=1),
                pretrainer.masked_language_model(), pretrainer):
        assert_config_round_trip(obj)
    clone = assert_config_round_trip(ElectraEncoder(CONFIG.model, seed=9))
    np.testing.assert_array_equal(clone(INPUTS), ElectraEncoder(CONFIG.model, seed=9)(INPUTS))


def test_generator_and_discriminator_share_one_table_after_a_config_round_trip(
        pretrainer, tmp_path, tokenizer):
    # The embeddings are held by both encoders and the MLM head: their config is written once
    # (the other holders refer to it), and the rebuilt pretrainer has one embedding layer, one
    # word table and the variable paths (optimizer slot and seed-generator names) of the original.
    text = json.dumps(keras.saving.serialize_keras_object(pretrainer))
    assert text.count('"class_name": "ElectraEmbeddings"') == 1
    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert isinstance(clone, ElectraPretrainer)
    assert clone.generator.embeddings is clone.embeddings is clone.discriminator.embeddings
    table = clone.embeddings.word_embeddings
    assert clone.mlm_head.embeddings.word_embeddings is table
    assert sum(v is table for v in clone.trainable_variables) == 1
    assert [v.path for v in clone.variables] == [v.path for v in pretrainer.variables]
    assert clone.settings == pretrainer.settings
    # The generator alone (encoder + MLM head, the saved form): 42 weights with one table; a
    # round trip that rebuilt the embeddings per holder gave 47 and an untied output layer.
    original = pretrainer.masked_language_model()
    masked_lm = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(original))))
    assert masked_lm.encoder.embeddings is masked_lm.head.embeddings
    table = masked_lm.head.embeddings.word_embeddings
    assert sum(v is table for v in masked_lm.trainable_variables) == 1
    assert len(masked_lm.trainable_variables) == len(original.trainable_variables) == 42
    # The saved generator (encoder + MLM head) shares the table it was saved with.
    save_pretrained(str(tmp_path), CONFIG, tokenizer, pretrainer.backbone,
                    pretrainer.masked_language_model())
    generator = load_generator(str(tmp_path))
    assert generator.encoder.embeddings is generator.head.embeddings
    table = generator.head.embeddings.word_embeddings
    assert sum(v is table for v in generator.trainable_variables) == 1
    assert len(generator.trainable_variables) == len(
        pretrainer.masked_language_model().trainable_variables)
    # Built by the training recipe: the training run's variable paths; and the discriminator
    # saved beside it holds the same table values.
    assert [v.path for v in generator.variables] == [v.path for v in original.variables]
    _, _, encoder = load_pretrained(str(tmp_path))
    np.testing.assert_array_equal(encoder.embeddings.word_embeddings.numpy(), table.numpy())
    np.testing.assert_array_equal(table.numpy(), pretrainer.embeddings.word_embeddings.numpy())


def test_nested_configs_are_read_in_the_order_written(pretrainer):
    # The head's embeddings refer to the encoder's: reading the head first is a bug in a
    # from_config, reported with both paths.
    config = json.loads(json.dumps(pretrainer.masked_language_model().get_config()))
    assert config["head"]["config"]["embeddings"] == {"same_as": "encoder/embeddings"}
    with pytest.raises(ValueError, match="head/embeddings refers to encoder/embeddings"):
        deserialize_nested(config, "head", "encoder")


def test_pretrainer_refuses_networks_that_do_not_share_the_embeddings(pretrainer):
    other = ElectraEncoder(CONFIG.model, seed=1, name="discriminator")
    with pytest.raises(ValueError, match="discriminator does not share"):
        ElectraPretrainer(pretrainer.generator, pretrainer.mlm_head, other, pretrainer.rtd_head,
                          settings=pretrainer.settings, special_tokens=SPECIAL)
    with pytest.raises(ValueError, match="both a discriminator and an rtd_head"):
        ElectraPretrainer(pretrainer.generator, pretrainer.mlm_head, pretrainer.discriminator,
                          settings=pretrainer.settings, special_tokens=SPECIAL)


def test_classification_head():
    head = ClassificationHead(3, dropout_rate=0.1, seed=1)
    hidden = tf.random.stateless_normal([2, 8, 32], seed=[1, 2])
    logits = head(hidden)
    assert logits.shape == (2, 3)
    np.testing.assert_allclose(logits, hidden[:, 0] @ head.dense.kernel + head.dense.bias,
                               atol=1e-6)


def test_save_and_load_pretrained(tmp_path, tokenizer, pretrainer):
    model_dir = tmp_path / "run"
    for _ in range(2):  # saving again into the same directory overwrites it
        save_pretrained(str(model_dir / "pretrained"), CONFIG, tokenizer, pretrainer.backbone,
                        pretrainer.masked_language_model())
    assert sorted(os.listdir(model_dir / "pretrained")) == [
        "config.json", "config.yaml", "discriminator.weights.h5", "generator.weights.h5",
        "tokenizer.json", "vocab.txt"]
    config, loaded_tokenizer, encoder = load_pretrained(str(model_dir))  # MODEL_DIR works too
    assert config == CONFIG
    assert loaded_tokenizer.settings() == tokenizer.settings()
    np.testing.assert_array_equal(encoder(INPUTS), pretrainer.backbone(INPUTS))
    generator = load_generator(str(model_dir / "pretrained"))
    positions = {"positions": tf.constant([[1, 2], [3, 4]])}
    np.testing.assert_array_equal(generator({**INPUTS, **positions}),
                                  pretrainer.masked_language_model()({**INPUTS, **positions}))
    assert isinstance(generator, MaskedLanguageModel)


def test_load_pretrained_errors_name_the_problem(tmp_path, tokenizer, pretrainer):
    with pytest.raises(FileNotFoundError, match="discriminator.weights.h5"):
        load_pretrained(str(tmp_path))
    save_pretrained(str(tmp_path), CONFIG, tokenizer, pretrainer.backbone)
    with pytest.raises(FileNotFoundError, match="generator.weights.h5"):
        load_generator(str(tmp_path))
    with open(tmp_path / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("extra_token\n")
    with pytest.raises(TokenizerError, match="vocab_sha256"):
        load_pretrained(str(tmp_path))


def test_derive_seed_is_stable():
    assert derive_seed(0, "a") == derive_seed(0, "a") != derive_seed(0, "b")
    assert derive_seed(1234, "discriminator") == 1104743107
