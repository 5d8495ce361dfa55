"""The ELECTRA objective: generator MLM loss, discriminator RTD loss, their weighted sum, and
the counts behind the training metrics.

Losses are *sums divided by a given denominator*. The pretrainer passes the count of the
**global** batch (masked positions, non-padding tokens, summed over replicas and
micro-batches), so each replica's loss is its share of the global mean and the summed
gradients are exactly those of the global batch. The reference normalizes the same way within
its (single-device) batch: ``sum(losses) / (1e-6 + sum(weights))``, not a mean of
per-sequence means. All computation is float32, whatever the model's compute dtype.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

# The reference adds 1e-6 to every denominator so that an all-padding batch gives 0, not NaN.
_EPSILON = 1e-6


def _denominator(weights: tf.Tensor, denominator: Optional[tf.Tensor]) -> tf.Tensor:
    if denominator is None:
        denominator = tf.reduce_sum(weights)
    return tf.cast(denominator, tf.float32) + _EPSILON


def mlm_loss(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor,
             denominator: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Weighted softmax cross-entropy at the predicted positions.

    Args:
      logits: float [batch, predictions, vocab].
      labels: int [batch, predictions], the original token ids.
      weights: [batch, predictions], 1 for real predictions, 0 for padding slots.
      denominator: the number of predictions to divide by (the global batch's); defaults to
        ``sum(weights)``.

    Returns:
      float32 scalar ``sum(weights · xent) / (denominator + 1e-6)``.
    """
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(xent * weights) / _denominator(weights, denominator)


def rtd_loss(logits: tf.Tensor, is_replaced: tf.Tensor, padding_mask: tf.Tensor,
             denominator: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Sigmoid cross-entropy of replaced-token detection over all non-padding tokens.

    Args:
      logits: float [batch, seq], positive = "replaced".
      is_replaced: int [batch, seq], 1 where the token differs from the original.
      padding_mask: int [batch, seq], 1 on real tokens (``[CLS]``/``[SEP]`` included, as the
        reference).
      denominator: the number of tokens to divide by; defaults to ``sum(padding_mask)``.

    Returns:
      float32 scalar.
    """
    xent = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(is_replaced, tf.float32), logits=tf.cast(logits, tf.float32))
    weights = tf.cast(padding_mask, tf.float32)
    return tf.reduce_sum(xent * weights) / _denominator(weights, denominator)


def electra_loss(generator_loss: tf.Tensor, discriminator_loss: tf.Tensor,
                 generator_weight: float = 1.0, discriminator_weight: float = 50.0) -> tf.Tensor:
    """``generator_weight · mlm + discriminator_weight · rtd`` (paper eq. 1, λ = 50)."""
    return generator_weight * generator_loss + discriminator_weight * discriminator_loss


def mlm_counts(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums behind the generator metrics (reference ``masked_lm_accuracy``).

    Returns:
      float32 scalars ``predictions`` (sum of weights) and ``generator_correct`` (weighted
      count of argmax == label).
    """
    weights = tf.cast(weights, tf.float32)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               tf.cast(labels, tf.int32)), tf.float32)
    return {"predictions": tf.reduce_sum(weights),
            "generator_correct": tf.reduce_sum(correct * weights)}


def rtd_counts(logits: tf.Tensor, is_replaced: tf.Tensor, padding_mask: tf.Tensor,
               mlm_weights: tf.Tensor, positions: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums behind the discriminator metrics (reference ``disc_accuracy/precision/recall``).

    Args:
      logits: float [batch, seq].
      is_replaced: int [batch, seq].
      padding_mask: int [batch, seq].
      mlm_weights: [batch, predictions], the masked positions' weights.
      positions: int [batch, predictions].

    Returns:
      float32 scalars: ``tokens`` (non-padding), ``discriminator_correct``,
      ``true_positives``, ``predicted_positives``, ``actual_positives`` (replaced tokens) and
      ``replaced_at_masked`` (masked positions whose sample differs from the original).
    """
    weights = tf.cast(padding_mask, tf.float32)
    labels = tf.cast(is_replaced, tf.float32) * weights
    predicted = tf.cast(logits > 0, tf.float32) * weights
    replaced_at_masked = tf.gather(labels, tf.cast(positions, tf.int32), batch_dims=1)
    return {
        "tokens": tf.reduce_sum(weights),
        "discriminator_correct": tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32)
                                               * weights),
        "true_positives": tf.reduce_sum(predicted * labels),
        "predicted_positives": tf.reduce_sum(predicted),
        "actual_positives": tf.reduce_sum(labels),
        "replaced_at_masked": tf.reduce_sum(replaced_at_masked * tf.cast(mlm_weights, tf.float32)),
    }


def safe_ratio(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """``numerator / denominator``, 0 when the denominator is 0 (e.g. recall with no positives)."""
    return tf.math.divide_no_nan(tf.cast(numerator, tf.float32), tf.cast(denominator, tf.float32))


# Replaced-token AUC from histograms of the predicted probability: histograms add up across
# micro-batches and replicas, so the AUC is the global batch's, whatever its split. 4096 equal
# bins of sigmoid(logit) resolve logit differences of ~0.002 around the all-original prior
# (p ≈ 0.1, where a discriminator that has just started to learn keeps its scores).
AUC_BINS = 4096


def rtd_histograms(logits: tf.Tensor, is_replaced: tf.Tensor,
                   padding_mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """Counts of replaced and original tokens per bin of the predicted probability.

    Returns:
      float32 [AUC_BINS] each: ``replaced_histogram`` and ``original_histogram`` (non-padding
      tokens only), for :func:`auc_from_histograms`.
    """
    weights = tf.reshape(tf.cast(padding_mask, tf.float32), [-1])
    labels = tf.reshape(tf.cast(is_replaced, tf.float32), [-1])
    probabilities = tf.sigmoid(tf.reshape(tf.cast(logits, tf.float32), [-1]))
    bins = tf.minimum(tf.cast(probabilities * AUC_BINS, tf.int32), AUC_BINS - 1)
    histogram = lambda w: tf.math.unsorted_segment_sum(w, bins, AUC_BINS)  # noqa: E731
    return {"replaced_histogram": histogram(weights * labels),
            "original_histogram": histogram(weights * (1.0 - labels))}


def auc_from_histograms(replaced: tf.Tensor, original: tf.Tensor) -> tf.Tensor:
    """Area under the ROC curve: P(score of a replaced token > score of an original one).

    Ties (the same bin) count one half. 0.5 for a discriminator that ranks at random or gives
    every token the same score (the all-original baseline), and when either class is empty (no
    pair to rank: a step's AUC then does not pull a logged mean toward 0 or 1).
    """
    below = tf.cumsum(original, exclusive=True)  # originals in lower bins
    pairs = tf.reduce_sum(replaced) * tf.reduce_sum(original)
    ranked = tf.reduce_sum(replaced * (below + 0.5 * original))
    return tf.where(pairs > 0, safe_ratio(ranked, pairs), 0.5)


def cosine_sums(hidden: tf.Tensor, padding_mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums behind the mean cosine similarity between token outputs (:func:`mean_cosine`).

    Returns:
      ``unit_sum`` float32 [hidden], the sum of the L2-normalized outputs of non-padding
      tokens, and ``unit_count``, their number.
    """
    weights = tf.cast(padding_mask, tf.float32)[..., tf.newaxis]
    units = tf.math.l2_normalize(tf.cast(hidden, tf.float32), axis=-1) * weights
    return {"unit_sum": tf.reduce_sum(units, axis=[0, 1]), "unit_count": tf.reduce_sum(weights)}


def mean_cosine(unit_sum: tf.Tensor, unit_count: tf.Tensor) -> tf.Tensor:
    """Mean cosine over all pairs of distinct tokens, ``(‖Σ u‖² − n) / (n (n − 1))``.

    Near 1 when every token has the same output (collapsed representations); a trained
    encoder's outputs are far more diverse.
    """
    n = tf.cast(unit_count, tf.float32)
    return safe_ratio(tf.reduce_sum(tf.square(unit_sum)) - n, n * (n - 1.0))
