"""Fused training kernels: exact GELU and dropout, and a fast counter-based random generator.

Why: outside the matrix products, a training step is chains of element-wise operations, and
TensorFlow runs each one as its own pass over memory. The exact GELU and its gradient, composed
from TensorFlow ops, are about eight passes, and stateless Philox random numbers are slow on the
CPU. In a TensorFlow profile of an ELECTRA-Small step they were the largest cost after the
matrix products. ``benchmarks/training_kernels.py`` times each kernel against the ops it
replaces (docs/models.md, "Training kernels").

``gelu`` and ``dropout`` are ``tf.custom_gradient``s whose forward and backward are each one
XLA-compiled function (``jit_compile=True``); the backward recomputes what it needs (the dropout
mask) rather than keeping it alive. ``uniform`` is one XLA function. The matrix products stay in
TensorFlow's own kernels (oneDNN on CPU): compiling the whole step with XLA made them slower.

Layers use these kernels only when ``training`` is true. Inference, evaluation and exported
SavedModels run plain TensorFlow ops, so a model server needs no XLA. For GELU both paths agree
to float32 rounding (``tests/test_kernels.py``).

Randomness is counter-based: the bits of element ``i`` under the 64-bit key ``(k0, k1)`` are
``fmix(fmix(i · φ + k0) ^ k1)``, where ``fmix`` is MurmurHash3's 32-bit finalizer (a bijection
with full avalanche) and ``φ = 0x9E3779B9``. It is integer arithmetic, so it gives the same bits
inside and outside XLA, which TensorFlow's and XLA's Philox kernels do not. The tests check
uniformity, bit balance, and independence across neighbouring elements and across keys; dropout
masks and sampling noise need no more than that. Each dropout layer's key comes from its seeded,
checkpointed stream (``layers.SeededDropout``), so masks depend only on the config seed, the
call count and the replica.
"""

from __future__ import annotations

import math

import tensorflow as tf

_NEG_SQRT_HALF = -1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GOLDEN = 0x9E3779B9  # odd: multiplying the index by it is a bijection on uint32


def _jit(fn):
    return tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)


# -- random bits ---------------------------------------------------------------------------------

def _fmix32(h: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finalizer: a bijection with full avalanche."""
    shift = lambda x, k: tf.bitwise.right_shift(x, tf.constant(k, tf.uint32))
    h = tf.bitwise.bitwise_xor(h, shift(h, 16)) * tf.constant(0x85EBCA6B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, shift(h, 13)) * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(h, shift(h, 16))


def random_bits(shape, key: tf.Tensor) -> tf.Tensor:
    """uint32 random bits of ``shape``, a pure function of the element index and ``key``.

    Args:
      shape: the output shape; fewer than 2**31 elements per stream.
      key: uint32 [2], one stream for the whole tensor, or [shape[0], 2], one stream per row
        of the first axis (the index then counts within the row, so a row's bits do not depend
        on the other rows).

    Returns:
      uint32 tensor of ``shape``.
    """
    key = tf.reshape(key, [-1, 2])
    per_stream = tf.reduce_prod(shape) // tf.shape(key)[0]
    index = tf.bitcast(tf.range(per_stream, dtype=tf.int32), tf.uint32)[tf.newaxis]
    h = _fmix32(index * tf.constant(_GOLDEN, tf.uint32) + key[:, :1])
    return tf.reshape(_fmix32(tf.bitwise.bitwise_xor(h, key[:, 1:])), shape)


def unit_interval(bits: tf.Tensor) -> tf.Tensor:
    """float32 numbers strictly inside (0, 1) from uint32 random bits, on a 2**-23 grid.

    The top 23 bits ``h`` map to ``(h + 0.5) · 2**-23``: the largest value is ``1 − 2**-24``,
    exactly representable in float32, and the smallest ``2**-24``. (24 bits would not do: their
    largest value, ``1 − 2**-25``, rounds to 1.0 in float32, and ``−log(−log 1) = +inf`` would
    make a Gumbel-max sample ignore the logits.) An exact conversion, the same with or without
    XLA.
    """
    high = tf.bitwise.right_shift(bits, tf.constant(9, tf.uint32))
    return (tf.cast(high, tf.float32) + 0.5) * 2.0**-23


@_jit
def uniform(shape, key: tf.Tensor) -> tf.Tensor:
    """float32 uniform numbers in the open interval (0, 1): :func:`unit_interval` of
    :func:`random_bits`.

    One XLA kernel. Gumbel-max sampling of an ELECTRA-Small batch (32 × 19 × 30,522 numbers)
    is 1.9× faster with it than with per-example Philox streams under ``tf.map_fn``
    (``benchmarks/training_kernels.py``, CPU). Integer arithmetic and an exact conversion: the
    same numbers with or without XLA.
    """
    return unit_interval(random_bits(shape, key))


def seed_key(seeds: tf.Tensor) -> tf.Tensor:
    """uint32 [..., 2] keys from int64 seed pairs ``[..., (a, c)]``.

    For a fixed first word ``a`` (seed and stream), the key is a *bijection* of the 64 bits of
    the second word ``c`` (step and example index, ``sampling.example_seeds``): distinct
    counters never share a key, so no two (step, example) pairs draw the same numbers. ``a`` is
    hashed into two whitening words and four round keys; the whitened 32-bit halves of ``c`` then
    go through four Feistel rounds ``(l, r) → (r, l ^ F(r))``, each invertible whatever ``F`` is
    (here MurmurHash3's ``fmix32`` of ``r`` plus the round key). Flipping any one of the 128 seed
    bits changes about half of the bits of each key word (``tests/test_kernels.py``).
    """
    seeds = tf.cast(seeds, tf.int64)
    word = lambda x: tf.cast(tf.bitwise.bitwise_and(x, 0xFFFFFFFF), tf.uint32)
    a_low, a_high = word(seeds[..., 0]), word(tf.bitwise.right_shift(seeds[..., 0], 32))
    c_low, c_high = word(seeds[..., 1]), word(tf.bitwise.right_shift(seeds[..., 1], 32))
    # A chain of fmix32 over the first word, so that every bit of it reaches every key.
    k = _fmix32(tf.bitwise.bitwise_xor(a_low, _fmix32(a_high + _GOLDEN)))
    keys = []
    for _ in range(6):
        k = _fmix32(k + _GOLDEN)
        keys.append(k)
    left = tf.bitwise.bitwise_xor(c_high, keys[0])
    right = tf.bitwise.bitwise_xor(c_low, keys[1])
    for round_key in keys[2:]:
        left, right = right, tf.bitwise.bitwise_xor(left, _fmix32(right + round_key))
    return tf.stack([left, right], axis=-1)


# -- GELU ----------------------------------------------------------------------------------------

def _gelu_cdf(x):
    return 0.5 * tf.math.erfc(x * _NEG_SQRT_HALF)


@_jit
def _gelu_forward(x):
    xf = tf.cast(x, tf.float32)
    return tf.cast(xf * _gelu_cdf(xf), x.dtype)


@_jit
def _gelu_backward(x, dy):
    xf = tf.cast(x, tf.float32)
    slope = _gelu_cdf(xf) + xf * (_INV_SQRT_2PI * tf.exp(-0.5 * tf.square(xf)))
    return tf.cast(tf.cast(dy, tf.float32) * slope, x.dtype)


@tf.custom_gradient
def gelu(x: tf.Tensor):
    """Exact (erf) GELU, ``x · Φ(x)``; gradient ``Φ(x) + x · φ(x)``."""
    return _gelu_forward(x), lambda dy: _gelu_backward(x, dy)


# -- dropout -------------------------------------------------------------------------------------

@_jit
def _dropout(x, key, rate):
    # Keep with probability 1 − rate: the bits are at least rate · 2**32.
    threshold = min(int(round(rate * 2.0**32)), 2**32 - 1)
    keep = random_bits(tf.shape(x), key) >= tf.constant(threshold, tf.uint32)
    return tf.where(keep, x * tf.cast(1.0 / (1.0 - rate), x.dtype), tf.zeros_like(x))


def dropout(x: tf.Tensor, rate: float, key: tf.Tensor) -> tf.Tensor:
    """Inverted dropout: zeroes each element with probability ``rate``, scales the rest.

    Args:
      x: float tensor.
      rate: Python float in [0, 1); 0 returns ``x``.
      key: uint32 [2] (:func:`seed_key`); the same key gives the same mask.
    """
    if not rate:
        return x

    @tf.custom_gradient
    def fn(x):
        # The mask is recomputed from the key for the gradient instead of being stored.
        return _dropout(x, key, rate), lambda dy: _dropout(dy, key, rate)

    return fn(x)

