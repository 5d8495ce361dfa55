"""Stateless per-example randomness, Gumbel-max sampling and token replacement."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from electra_tf.objective.sampling import (SAMPLING_STREAM, example_seeds, gumbel_max_sample,
                                 replace_tokens, example_uniforms)


def test_example_seeds_layout_and_uniqueness():
    seeds = example_seeds(5, SAMPLING_STREAM, tf.constant(3, tf.int64), tf.constant([0, 1, 7]))
    np.testing.assert_array_equal(seeds, [[5 + (2 << 32), 3 << 24],
                                          [5 + (2 << 32), (3 << 24) + 1],
                                          [5 + (2 << 32), (3 << 24) + 7]])
    u = example_uniforms(seeds, [4])
    assert u.shape == (3, 4) and len(np.unique(u.numpy())) == 12


def test_uniform_of_an_example_does_not_depend_on_its_batch():
    seeds = example_seeds(1, SAMPLING_STREAM, 0, tf.range(6))
    together = example_uniforms(seeds, [2, 3]).numpy()
    for b in range(6):
        np.testing.assert_array_equal(example_uniforms(seeds[b:b + 1], [2, 3]).numpy()[0],
                                      together[b])


def test_low_temperature_gives_argmax():
    logits = tf.random.stateless_normal([4, 6, 50], seed=[3, 4])
    seeds = example_seeds(0, SAMPLING_STREAM, 0, tf.range(4))
    sampled = gumbel_max_sample(logits, seeds, temperature=1e-4)
    np.testing.assert_array_equal(sampled, tf.argmax(logits, -1, output_type=tf.int32))
    assert sampled.dtype == tf.int32


def test_samples_follow_the_softmax_at_temperature_one():
    probabilities = np.array([0.6, 0.25, 0.1, 0.05])
    logits = tf.constant(np.log(np.tile(probabilities, (2, 5000, 1))), tf.float32)
    seeds = example_seeds(9, SAMPLING_STREAM, 0, tf.range(2))
    sampled = gumbel_max_sample(logits, seeds).numpy()
    frequencies = np.bincount(sampled.ravel(), minlength=4) / sampled.size
    np.testing.assert_allclose(frequencies, probabilities, atol=0.015)
    # Temperature 2 flattens: softmax(log p / 2) ∝ sqrt(p).
    flat = gumbel_max_sample(logits, seeds, temperature=2.0).numpy()
    expected = np.sqrt(probabilities) / np.sqrt(probabilities).sum()
    np.testing.assert_allclose(np.bincount(flat.ravel(), minlength=4) / flat.size, expected,
                               atol=0.015)


def test_sampling_has_no_gradient():
    logits = tf.Variable(tf.random.stateless_normal([1, 2, 5], seed=[1, 1]))
    with tf.GradientTape() as tape:
        sampled = gumbel_max_sample(logits, example_seeds(0, SAMPLING_STREAM, 0, tf.range(1)))
        loss = tf.reduce_sum(tf.cast(sampled, tf.float32) * logits[..., 0])
    assert tape.gradient(loss, logits).numpy()[..., 1:].sum() == 0


def test_replace_tokens_labels_only_where_tokens_differ():
    original = tf.constant([[101, 11, 12, 13, 102, 0], [101, 21, 22, 102, 0, 0]])
    positions = tf.constant([[1, 3, 0], [2, 0, 0]])
    weights = tf.constant([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    sampled = tf.constant([[50, 13, 77], [22, 99, 99]])  # 13 and 22 equal the originals
    updated, is_replaced = replace_tokens(original, positions, weights, sampled)
    np.testing.assert_array_equal(updated, [[101, 50, 12, 13, 102, 0], [101, 21, 22, 102, 0, 0]])
    np.testing.assert_array_equal(is_replaced, [[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
