"""Fused training kernels: the same values and gradients as the plain ops, and dropout masks with
the right statistics, reproducible from their key."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_tf import kernels
from electra_tf.config import load_config
from electra_tf.encoder import TransformerLayer


def _value_and_grad(fn, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y, tape.gradient(y, x, output_gradients=dy)


def test_gelu_matches_the_exact_erf_gelu_and_its_gradient():
    x = tf.constant(np.linspace(-9.0, 9.0, 4001), tf.float32)
    dy = tf.constant(np.cos(np.linspace(0.0, 20.0, 4001)), tf.float32)
    y, dx = _value_and_grad(kernels.gelu, x, dy)
    plain_y, plain_dx = _value_and_grad(
        lambda t: keras.activations.gelu(t, approximate=False), x, dy)
    np.testing.assert_allclose(y, plain_y, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(dx, plain_dx, atol=2e-6, rtol=1e-5)
    # Hand-checkable points: gelu(0) = 0, gelu'(0) = 1/2, gelu(1) = Φ(1) = 0.841345.
    y, dx = _value_and_grad(kernels.gelu, tf.constant([0.0, 1.0]), tf.ones([2]))
    np.testing.assert_allclose(y, [0.0, 0.8413447], atol=1e-6)
    np.testing.assert_allclose(dx[0], 0.5, atol=1e-6)


def test_gelu_keeps_the_dtype():
    x = tf.constant([-1.0, 0.5, 2.0], tf.bfloat16)
    y, dx = _value_and_grad(kernels.gelu, x, tf.ones_like(x))
    assert y.dtype == dx.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32), [-0.158655, 0.345731, 1.954500],
                               rtol=1e-2)


KEY = kernels.seed_key(tf.constant([1234, 5678], tf.int64))


def test_dropout_mask_rate_scale_and_gradient():
    rate = 0.1
    x = tf.ones([256, 1024])
    dy = tf.fill([256, 1024], 2.0)
    y, dx = _value_and_grad(lambda t: kernels.dropout(t, rate, KEY), x, dy)
    kept = y.numpy() != 0
    # Kept entries are scaled by 1 / (1 − rate); the gradient flows through the same mask.
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.9, rtol=1e-6)
    np.testing.assert_array_equal(dx.numpy() != 0, kept)
    np.testing.assert_allclose(dx.numpy()[kept], 2 / 0.9, rtol=1e-6)
    # 262,144 Bernoulli(0.9) draws: the kept fraction within 5 standard deviations.
    n = kept.size
    assert abs(kept.mean() - 0.9) < 5 * math.sqrt(0.9 * 0.1 / n)
    # The same key gives the same mask; another key another one.
    np.testing.assert_array_equal(kernels.dropout(x, rate, KEY).numpy() != 0, kept)
    other = kernels.dropout(x, rate, kernels.seed_key(tf.constant([1234, 5679], tf.int64)))
    agreement = ((other.numpy() != 0) == kept).mean()
    assert abs(agreement - (0.9 ** 2 + 0.1 ** 2)) < 0.01  # independent masks


def test_dropout_rate_zero_is_the_identity():
    x = tf.constant([[1.0, -2.0, 3.0]])
    assert kernels.dropout(x, 0.0, None) is x


@pytest.mark.parametrize("key_change", [(0, 1), (1, 0), (0, 1 << 31)])
def test_random_bits_are_uniform_and_independent(key_change):
    shape = [512, 512]
    bits = kernels.random_bits(shape, KEY).numpy().astype(np.float64).ravel()
    u = bits / 2.0**32
    n = u.size
    # Mean and variance of U[0, 1) (1/2 and 1/12) within 5 standard errors.
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    # 64 equal bins: chi-square with 63 degrees of freedom, far below its 99.99% quantile (≈ 117).
    counts = np.bincount((u * 64).astype(int), minlength=64)
    assert ((counts - n / 64) ** 2 / (n / 64)).sum() < 117
    # Neighbouring elements (rows and columns) and keys differing in one bit are uncorrelated.
    grid = u.reshape(shape)
    limit = 5 / math.sqrt(n)
    assert abs(np.corrcoef(grid[:, :-1].ravel(), grid[:, 1:].ravel())[0, 1]) < limit
    assert abs(np.corrcoef(grid[:-1].ravel(), grid[1:].ravel())[0, 1]) < limit
    other_key = tf.bitwise.bitwise_xor(KEY, tf.constant(key_change, tf.uint32))
    other = kernels.random_bits(shape, other_key).numpy().astype(np.float64).ravel() / 2.0**32
    assert abs(np.corrcoef(u, other)[0, 1]) < limit
    # Bitwise: every output bit is set half of the time.
    ones = np.unpackbits(bits.astype(np.uint32).view(np.uint8)).reshape(n, 32).mean(axis=0)
    assert np.all(np.abs(ones - 0.5) < 5 * math.sqrt(0.25 / n))


def test_seed_key_spreads_every_seed_bit_over_both_words():
    base = tf.constant([[5, 3 << 24]], tf.int64)
    bits = (np.uint64(1) << np.arange(64, dtype=np.uint64)).view(np.int64)
    zeros = np.zeros(64, np.int64)
    flips = tf.constant(np.concatenate([np.stack([bits, zeros], 1), np.stack([zeros, bits], 1)]))
    keys = kernels.seed_key(tf.concat([base, tf.bitwise.bitwise_xor(base, flips)], 0))
    assert keys.dtype == tf.uint32 and keys.shape == [129, 2]
    changed = np.unpackbits(tf.bitwise.bitwise_xor(keys[1:], keys[:1]).numpy().view(np.uint8),
                            axis=1).reshape(128, 2, 32).mean(axis=2)
    # Flipping any one of the 128 seed bits changes about half of the bits of each key word.
    assert np.all((changed > 0.2) & (changed < 0.8))
    assert abs(changed.mean() - 0.5) < 0.05


def test_per_row_keys_draw_each_row_from_its_own_key():
    keys = kernels.seed_key(tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64))
    together = kernels.random_bits([3, 4, 5], keys).numpy()
    for row in range(3):
        np.testing.assert_array_equal(kernels.random_bits([1, 4, 5], keys[row]).numpy()[0],
                                      together[row])
    u = kernels.uniform([3, 1000], keys).numpy()
    assert u.min() > 0 and u.max() < 1


def test_uniform_is_the_same_inside_and_outside_xla():
    keys = kernels.seed_key(tf.constant([[1, 2], [3, 4]], tf.int64))
    plain = kernels.uniform.python_function(tf.constant([2, 3, 50]), keys)
    np.testing.assert_array_equal(kernels.uniform([2, 3, 50], keys), plain)
