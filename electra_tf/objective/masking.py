"""Dynamic in-graph masking for the generator's masked-LM objective.

Follows google-research/electra ``pretrain/pretrain_helpers.py`` ``mask``:

* per sequence, ``n = max(1, min(max_predictions, round(mask_prob · non-padding tokens)))``
  positions are predicted (``round`` is TensorFlow's half-to-even, as the reference; the count
  includes ``[CLS]``/``[SEP]``, as the reference's ``input_mask`` sum);
* candidates are real tokens other than ``[CLS]``, ``[SEP]`` (and ``[MASK]``): those and
  padding are never masked;
* of the predicted positions, ``mask_token_rate`` (85%) become ``[MASK]``, ``random_token_rate``
  (0% by default) a uniformly random id, the rest keep their token and are still predicted.

Deliberate deviation: the reference draws positions *with* replacement
(``tf.random.categorical``), so a position can be drawn twice and then counts twice in the
loss while fewer distinct tokens are masked. We draw *without* replacement (the top-``n`` of
per-token uniform scores), so exactly ``n`` distinct positions are predicted; ``n`` is further
capped by the number of candidates (a sequence ``[CLS] [SEP]`` predicts nothing).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import tensorflow as tf

from electra_tf.objective.sampling import example_uniforms, scatter_positions


class MaskedInputs(NamedTuple):
    """The result of :func:`mask_tokens`.

    Attributes:
      token_ids: int32 [batch, seq], the input with ``[MASK]`` (or random ids) written in.
      positions: int32 [batch, predictions], predicted positions; 0 in unused slots.
      labels: int32 [batch, predictions], original ids at ``positions``; 0 in unused slots.
      weights: float32 [batch, predictions], 1 for used slots, 0 otherwise.
    """

    token_ids: tf.Tensor
    positions: tf.Tensor
    labels: tf.Tensor
    weights: tf.Tensor


def num_to_predict(padding_mask: tf.Tensor, num_candidates: tf.Tensor, mask_prob: float,
                   max_predictions: int) -> tf.Tensor:
    """``min(candidates, max(1, min(max_predictions, round(mask_prob · tokens))))``, int32 [batch].

    Args:
      padding_mask: int [batch, seq], 1 on real tokens.
      num_candidates: int [batch], maskable tokens per sequence.
      mask_prob: fraction of tokens to predict.
      max_predictions: the per-sequence cap ``P``.
    """
    tokens = tf.reduce_sum(tf.cast(padding_mask, tf.float32), axis=-1)
    n = tf.cast(tf.round(tokens * mask_prob), tf.int32)
    n = tf.maximum(1, tf.minimum(max_predictions, n))
    return tf.minimum(n, tf.cast(num_candidates, tf.int32))


def mask_tokens(token_ids: tf.Tensor, padding_mask: tf.Tensor, seeds: tf.Tensor, *,
                max_predictions: int, mask_prob: float, mask_token_rate: float,
                random_token_rate: float, mask_id: int, vocab_size: int,
                excluded_ids: Sequence[int]) -> MaskedInputs:
    """Chooses and corrupts the positions the generator must predict.

    Args:
      token_ids: int [batch, seq].
      padding_mask: int [batch, seq], 1 on real tokens.
      seeds: int64 [batch, 2], one random stream per example (``sampling.example_seeds``).
      max_predictions: ``P``, slots per sequence (<= seq).
      mask_prob: fraction of the non-padding tokens to predict.
      mask_token_rate: fraction of predicted positions replaced by ``[MASK]``.
      random_token_rate: fraction replaced by a random id in [0, vocab_size).
      mask_id: the ``[MASK]`` id.
      vocab_size: vocabulary size, for random ids.
      excluded_ids: ids never masked (``[CLS]``, ``[SEP]``, ``[MASK]``).

    Returns:
      :class:`MaskedInputs`.

    Example (hand-checkable):
      >>> ids = tf.constant([[101, 7, 8, 9, 102, 0]])
      >>> m = mask_tokens(ids, tf.cast(ids != 0, tf.int32), tf.constant([[1, 2]], tf.int64),
      ...                 max_predictions=2, mask_prob=0.4, mask_token_rate=1.0,
      ...                 random_token_rate=0.0, mask_id=103, vocab_size=200,
      ...                 excluded_ids=(101, 102, 103))
      >>> int(m.weights.numpy().sum())  # round(0.4 · 5 tokens) = 2
      2
    """
    token_ids = tf.cast(token_ids, tf.int32)
    padding_mask = tf.cast(padding_mask, tf.int32)
    seq_length = token_ids.shape[1]
    if seq_length is not None and max_predictions > seq_length:
        raise ValueError(f"max_predictions={max_predictions} exceeds the sequence length "
                         f"{seq_length}")
    candidates = padding_mask > 0
    for token in excluded_ids:
        candidates &= tf.not_equal(token_ids, token)
    n = num_to_predict(padding_mask, tf.reduce_sum(tf.cast(candidates, tf.int32), -1),
                       mask_prob, max_predictions)

    # One draw per example: row 0 scores the positions, rows 1-2 (first P columns) decide the
    # corruption and the random id of each prediction slot.
    noise = example_uniforms(seeds, [3, tf.shape(token_ids)[1]])
    scores = tf.where(candidates, noise[:, 0], -1.0)
    _, positions = tf.math.top_k(scores, k=max_predictions, sorted=True)
    used = tf.range(max_predictions)[tf.newaxis, :] < n[:, tf.newaxis]
    positions = tf.where(used, positions, 0)
    weights = tf.cast(used, tf.float32)
    labels = tf.gather(token_ids, positions, batch_dims=1) * tf.cast(used, tf.int32)

    action = noise[:, 1, :max_predictions]
    random_ids = tf.minimum(
        tf.cast(noise[:, 2, :max_predictions] * vocab_size, tf.int32), vocab_size - 1)
    new_ids = tf.where(action < mask_token_rate, mask_id,
                       tf.where(action < mask_token_rate + random_token_rate, random_ids, labels))
    masked_ids = scatter_positions(token_ids, positions, weights, new_ids)
    return MaskedInputs(masked_ids, positions, labels, weights)
