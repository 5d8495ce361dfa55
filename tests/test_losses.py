"""Loss functions and metric counts on hand-checkable tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import losses


def test_mlm_loss_uniform_logits_is_log_vocab_and_ignores_padding_slots():
    logits = tf.zeros([2, 3, 4])
    labels = tf.constant([[1, 2, 0], [3, 0, 0]])
    weights = tf.constant([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert losses.mlm_loss(logits, labels, weights).numpy() == pytest.approx(math.log(4), 1e-6)
    # A global denominator of 6 (e.g. 3 more predictions on another replica) halves it.
    assert losses.mlm_loss(logits, labels, weights, denominator=6.0).numpy() == pytest.approx(
        3 * math.log(4) / 6, 1e-6)


def test_mlm_loss_hand_computed():
    logits = tf.constant([[[2.0, 0.0], [0.0, 0.0]]])
    labels = tf.constant([[0, 1]])
    weights = tf.constant([[1.0, 1.0]])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)) / 2
    assert losses.mlm_loss(logits, labels, weights).numpy() == pytest.approx(expected, 1e-6)


def test_rtd_loss_hand_computed_over_real_tokens():
    logits = tf.constant([[0.0, 2.0, -1.0, 5.0]])
    is_replaced = tf.constant([[0, 1, 1, 0]])
    padding = tf.constant([[1, 1, 1, 0]])
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 3
    assert losses.rtd_loss(logits, is_replaced, padding).numpy() == pytest.approx(expected, 1e-6)
    assert losses.rtd_loss(tf.zeros([2, 3]), tf.zeros([2, 3], tf.int32),
                           tf.ones([2, 3], tf.int32)).numpy() == pytest.approx(math.log(2), 1e-6)


def test_empty_batches_give_zero_not_nan():
    assert losses.mlm_loss(tf.zeros([1, 2, 3]), tf.zeros([1, 2], tf.int32),
                           tf.zeros([1, 2])).numpy() == 0.0
    assert losses.safe_ratio(1.0, 0.0).numpy() == 0.0


def test_electra_loss_weights():
    assert losses.electra_loss(tf.constant(10.0), tf.constant(0.5)).numpy() == 35.0
    assert losses.electra_loss(2.0, 1.0, generator_weight=0.5, discriminator_weight=3.0) == 4.0


def test_mlm_counts():
    logits = tf.constant([[[0.0, 3.0, 1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
    counts = losses.mlm_counts(logits, tf.constant([[1, 2, 2]]), tf.constant([[1.0, 1.0, 0.0]]))
    assert counts["predictions"].numpy() == 2.0 and counts["generator_correct"].numpy() == 1.0


def test_rtd_counts_precision_recall_and_replaced_at_masked():
    logits = tf.constant([[1.0, 2.0, -1.0, -3.0, 4.0, 9.0]])  # predicted: 1 1 0 0 1 (pad)
    is_replaced = tf.constant([[0, 1, 1, 0, 1, 1]])         # actual:    0 1 1 0 1 (pad)
    padding = tf.constant([[1, 1, 1, 1, 1, 0]])
    counts = {k: float(v) for k, v in losses.rtd_counts(
        logits, is_replaced, padding, mlm_weights=tf.constant([[1.0, 1.0, 1.0]]),
        positions=tf.constant([[1, 2, 3]])).items()}
    assert counts == {"tokens": 5.0, "discriminator_correct": 3.0, "true_positives": 2.0,
                      "predicted_positives": 3.0, "actual_positives": 3.0,
                      "replaced_at_masked": 2.0}
    np.testing.assert_allclose(losses.safe_ratio(counts["true_positives"],
                                                 counts["predicted_positives"]), 2 / 3)
