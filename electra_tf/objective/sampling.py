"""Stateless per-example randomness and Gumbel-max replacement sampling.

Every random number of the ELECTRA objective is a pure function of
``(train.seed, stream, step, example_index)``: the same example at the same step draws the
same mask and the same replacements whether the global batch runs on one device or is split
across replicas, and after a restart (architecture.md, "example_index").

Per-example streams use the counter-based hash generator of ``electra_tf.models.kernels`` with one
key per example (``kernels.seed_key`` of the example's seed pair). It is plain integer
arithmetic, so it draws the same numbers inside and outside XLA (``train.jit_compile``, TPUs);
TensorFlow's Philox kernels do not (for the same seed, XLA's Philox draws different numbers).
It is also fast where it matters: the Gumbel noise has the size of the generator's logits
(batch × predictions × vocabulary).
"""

from __future__ import annotations

import tensorflow as tf

from electra_tf.models import kernels

# Stream ids: different purposes never share random numbers.
MASKING_STREAM = 1
SAMPLING_STREAM = 2
# Evaluation keys its randomness on the example only (not the step), so that evaluations at
# different steps score the same masks and samples.
EVAL_MASKING_STREAM = 3
EVAL_SAMPLING_STREAM = 4

_EXAMPLE_BITS = 24  # example_index < 2**24 (16.7M examples per global batch)


def example_seeds(seed: int, stream: int, step, example_index) -> tf.Tensor:
    """One stateless seed pair per example.

    The pair is ``[seed + stream · 2^32, step · 2^24 + example_index]`` (the second word as the
    64 bits of an unsigned counter): distinct for distinct (seed < 2^32, stream, step < 2^40,
    example_index < 2^24). ``kernels.seed_key`` maps the counter to a key bijectively for a given
    seed and stream, so no two (step, example) pairs of a stream share random numbers.

    Args:
      seed: ``config.train.seed``.
      stream: one of the ``*_STREAM`` constants.
      step: int scalar tensor (the optimizer step).
      example_index: int [batch], each example's index in the global batch.

    Returns:
      int64 [batch, 2].
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"train.seed={seed} must be within [0, 2**32)")
    example_index = tf.cast(example_index, tf.int64)
    first = tf.fill(tf.shape(example_index), tf.constant(seed + (stream << 32), tf.int64))
    counter = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(tf.cast(step, tf.uint64), tf.constant(_EXAMPLE_BITS, tf.uint64)),
        tf.cast(example_index, tf.uint64))
    return tf.stack([first, tf.bitcast(counter, tf.int64)], axis=1)


def example_uniforms(seeds: tf.Tensor, shape) -> tf.Tensor:
    """Uniform (0, 1) float32 numbers, example ``b`` drawn from ``seeds[b]`` only.

    Args:
      seeds: int64 [batch, 2] from :func:`example_seeds`.
      shape: per-example shape (a list of ints or int scalars, or an int tensor).

    Returns:
      float32 [batch, *shape].
    """
    full_shape = tf.concat([tf.shape(seeds)[:1], tf.cast(shape, tf.int32)], axis=0)
    return kernels.uniform(full_shape, kernels.seed_key(seeds))


def gumbel_max_sample(logits: tf.Tensor, seeds: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
    """Samples one id per row of ``softmax(logits / temperature)`` by the Gumbel-max trick.

    ``argmax(logits / T + g)`` with ``g = −log(−log u)``, ``u ~ U(0, 1)``, is an exact sample
    of the softmax (reference ``pretrain_helpers.sample_from_softmax``); ``u`` lies strictly
    inside (0, 1) by construction (``kernels.unit_interval``), so the noise is always finite and
    no epsilon is needed.

    Args:
      logits: float [batch, positions, vocab].
      seeds: int64 [batch, 2], one stream per example.
      temperature: > 0; small values approach argmax.

    Returns:
      int32 [batch, positions], gradient-free.
    """
    logits = tf.stop_gradient(tf.cast(logits, tf.float32))
    noise = -tf.math.log(-tf.math.log(example_uniforms(seeds, tf.shape(logits)[1:])))
    return tf.argmax(logits / temperature + noise, axis=-1, output_type=tf.int32)


def replace_tokens(token_ids: tf.Tensor, positions: tf.Tensor, weights: tf.Tensor,
                   new_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Writes ``new_ids`` at ``positions`` (where ``weights`` > 0); flags changed tokens.

    The discriminator's input is the *original* sequence with the generator's samples at the
    masked positions; a token is labelled replaced only where the sample differs from the
    original (reference ``_get_fake_data``: a sample equal to the original is "real").

    Args:
      token_ids: int [batch, seq], the original tokens.
      positions: int [batch, predictions], distinct where ``weights`` > 0.
      weights: [batch, predictions], 1 for real predictions, 0 for padding slots.
      new_ids: int [batch, predictions].

    Returns:
      ``(updated_ids, is_replaced)``: int32 [batch, seq] and int32 [batch, seq] (1 = replaced).
    """
    token_ids = tf.cast(token_ids, tf.int32)
    updated = scatter_positions(token_ids, positions, weights, tf.cast(new_ids, tf.int32))
    return updated, tf.cast(tf.not_equal(updated, token_ids), tf.int32)


def scatter_positions(token_ids: tf.Tensor, positions: tf.Tensor, weights: tf.Tensor,
                      new_ids: tf.Tensor) -> tf.Tensor:
    """``token_ids`` with ``new_ids[b, p]`` at ``[b, positions[b, p]]`` where ``weights[b, p]``.

    Implemented as a scatter-*add* of ``(new − old) · weight``: padding slots (weight 0, position
    0 by convention) add zero, so they never collide with a real write; real positions are
    distinct, so the result is deterministic.

    Args:
      token_ids: int32 [batch, seq].
      positions: int [batch, predictions].
      weights: [batch, predictions] in {0, 1}.
      new_ids: int32 [batch, predictions].

    Returns:
      int32 [batch, seq].
    """
    positions = tf.cast(positions, tf.int32)
    old = tf.gather(token_ids, positions, batch_dims=1)
    delta = (new_ids - old) * tf.cast(weights > 0, tf.int32)
    batch_index = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, tf.newaxis],
                                  tf.shape(positions))
    indices = tf.stack([batch_index, positions], axis=-1)
    return tf.tensor_scatter_nd_add(token_ids, indices, delta)
