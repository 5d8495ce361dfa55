"""Loss functions and metric counts on hand-checkable tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from electra_tf.objective import losses


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


def test_auc_from_histograms_matches_pairwise_counting():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 50)).astype(np.float32)
    labels = (rng.random((4, 50)) < 0.2).astype(np.int32)
    logits += 1.5 * labels  # replaced tokens score higher, imperfectly
    mask = np.ones((4, 50), np.int32)
    mask[:, 45:] = 0
    h = losses.rtd_histograms(tf.constant(logits), tf.constant(labels), tf.constant(mask))
    auc = float(losses.auc_from_histograms(h["replaced_histogram"], h["original_histogram"]))
    pos = logits[(labels == 1) & (mask == 1)]
    neg = logits[(labels == 0) & (mask == 1)]
    exact = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size)
    assert abs(auc - exact) < 0.01 and 0.75 < exact < 0.95
    # Histograms add: two halves give the AUC of the whole.
    halves = [losses.rtd_histograms(tf.constant(logits[i:i + 2]), tf.constant(labels[i:i + 2]),
                                    tf.constant(mask[i:i + 2])) for i in (0, 2)]
    summed = {k: halves[0][k] + halves[1][k] for k in h}
    assert float(losses.auc_from_histograms(**{
        "replaced": summed["replaced_histogram"], "original": summed["original_histogram"]})) == auc
    # The all-original baseline (one score for every token) and an empty class.
    same = losses.rtd_histograms(tf.zeros([4, 50]), tf.constant(labels), tf.constant(mask))
    assert float(losses.auc_from_histograms(same["replaced_histogram"],
                                            same["original_histogram"])) == 0.5
    none = losses.rtd_histograms(tf.zeros([4, 50]), tf.zeros([4, 50], tf.int32), tf.constant(mask))
    assert float(losses.auc_from_histograms(none["replaced_histogram"],
                                            none["original_histogram"])) == 0.5


def test_mean_cosine_of_token_outputs():
    # Two sequences, padding ignored: identical outputs give 1, orthogonal ones 0.
    same = tf.constant([[[1.0, 2.0], [2.0, 4.0], [9.0, 9.0]], [[0.5, 1.0], [3.0, 6.0], [0, 0]]])
    mask = tf.constant([[1, 1, 0], [1, 1, 0]])
    assert float(losses.mean_cosine(**losses.cosine_sums(same, mask))) == pytest.approx(1.0)
    basis = tf.eye(4)[tf.newaxis]  # four orthogonal tokens
    assert float(losses.mean_cosine(**losses.cosine_sums(basis, tf.ones([1, 4])))) == \
        pytest.approx(0.0, abs=1e-7)
    # Hand-checkable: tokens (1, 0), (0, 1), (1, 1)/√2: pairs 0, 1/√2, 1/√2 → mean √2/3.
    three = tf.constant([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    assert float(losses.mean_cosine(**losses.cosine_sums(three, tf.ones([1, 3])))) == \
        pytest.approx(math.sqrt(2) / 3, rel=1e-6)
