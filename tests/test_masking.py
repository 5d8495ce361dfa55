"""Dynamic masking: counts, exclusions, corruption rates, determinism, split invariance."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from electra_tf.objective.masking import mask_tokens, num_to_predict
from electra_tf.objective.sampling import MASKING_STREAM, example_seeds

CLS, SEP, MASK, VOCAB = 101, 102, 103, 1000


def _batch(lengths, seq_length=32, seed=0):
    """[CLS] random ids [SEP] padded with 0; ids in [1000, 1999] never equal a special id."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), seq_length), np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(VOCAB, 2 * VOCAB, n)
        ids[row, 0], ids[row, n - 1] = CLS, SEP
    return tf.constant(ids), tf.constant((ids != 0).astype(np.int32))


def _mask(ids, padding, step=0, index=None, **overrides):
    index = tf.range(ids.shape[0]) if index is None else index
    options = dict(max_predictions=5, mask_prob=0.15, mask_token_rate=0.85,
                   random_token_rate=0.0, mask_id=MASK, vocab_size=2 * VOCAB,
                   excluded_ids=(CLS, SEP, MASK))
    options.update(overrides)
    return mask_tokens(ids, padding, example_seeds(7, MASKING_STREAM, step, index), **options)


def test_num_to_predict_hand_checked():
    padding = tf.sequence_mask([3, 10, 10, 30, 32, 2], 32, tf.int32)
    candidates = tf.constant([1, 8, 8, 28, 30, 0])
    n = num_to_predict(padding, candidates, 0.15, 5).numpy().tolist()
    # 3·0.15=0.45→0→max 1; 10·0.15=1.5→2 (half to even); 30·0.15=4.5→4 (half to even);
    # 32·0.15=4.8→5; a [CLS] [SEP] sequence has no candidate → 0.
    assert n == [1, 2, 2, 4, 5, 0]
    assert num_to_predict(padding[:1] * 0 + 1, tf.constant([32]), 0.5, 5).numpy() == [5]


def test_positions_counts_labels_and_exclusions():
    lengths = [32, 20, 7, 3, 2]
    ids, padding = _batch(lengths)
    m = _mask(ids, padding)
    weights = m.weights.numpy()
    assert weights.sum(1).tolist() == [5, 3, 1, 1, 0]
    assert (weights[:, :-1] >= weights[:, 1:]).all()  # used slots first
    for row, n in enumerate(lengths):
        used = m.positions.numpy()[row][weights[row] > 0]
        assert len(set(used)) == len(used)  # without replacement
        assert ((used >= 1) & (used <= n - 2)).all()  # never [CLS], [SEP] or padding
        np.testing.assert_array_equal(m.labels.numpy()[row][weights[row] > 0],
                                      ids.numpy()[row][used])
    unused = weights == 0
    assert (m.positions.numpy()[unused] == 0).all() and (m.labels.numpy()[unused] == 0).all()
    changed = m.token_ids.numpy() != ids.numpy()
    assert set(m.token_ids.numpy()[changed]) <= {MASK}
    assert changed.sum() <= weights.sum()


def test_corruption_rates_and_mask_fraction():
    ids, padding = _batch([128] * 256, seq_length=128, seed=1)
    m = _mask(ids, padding, max_predictions=20, mask_token_rate=0.8, random_token_rate=0.1)
    used = m.weights.numpy() > 0
    assert used.sum() == 256 * 19  # round(0.15 · 128) = 19
    new = tf.gather(m.token_ids, m.positions, batch_dims=1).numpy()[used]
    original = m.labels.numpy()[used]
    as_mask = np.mean(new == MASK)
    kept = np.mean(new == original)
    random = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(random - 0.1) < 0.015
    # Each candidate position is equally likely (positions 1..126): no position bias.
    counts = np.bincount(m.positions.numpy()[used], minlength=128)[1:127]
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.6 * counts.mean()


def test_default_rates_keep_fifteen_percent():
    ids, padding = _batch([64] * 200, seq_length=64, seed=2)
    m = _mask(ids, padding, max_predictions=10)
    new = tf.gather(m.token_ids, m.positions, batch_dims=1).numpy()[m.weights.numpy() > 0]
    assert abs(np.mean(new == MASK) - 0.85) < 0.03
    assert np.all((new == MASK) | (new == m.labels.numpy()[m.weights.numpy() > 0]))


def test_deterministic_keyed_on_step_and_example_not_on_batch_split():
    ids, padding = _batch([30, 25, 32, 18], seed=3)
    full = _mask(ids, padding, step=4)
    again = _mask(ids, padding, step=4)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a, b)
    # Examples 2-3 masked alone (as on a second replica) get exactly the same masks.
    half = _mask(ids[2:], padding[2:], step=4, index=tf.constant([2, 3]))
    for a, b in zip(full, half):
        np.testing.assert_array_equal(a.numpy()[2:], b)
    other_step = _mask(ids, padding, step=5)
    assert not np.array_equal(full.positions, other_step.positions)
