"""Fused training kernels: the same values and gradients as the plain ops, and dropout masks with
the right statistics, reproducible from their key."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_tf.config_io import load_config
from electra_tf.models import kernels
from electra_tf.models.encoder import TransformerLayer


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


def test_unit_interval_is_open_at_both_ends_by_construction():
    # The extreme and near-extreme bit patterns: every float32 result lies strictly inside
    # (0, 1). The old 24-bit conversion returned exactly 1.0 for the top 2**8 patterns, so the
    # Gumbel noise −log(−log u) was +inf there.
    edges = np.array([0, 1, 511, 512, 2**31, 2**32 - 513, 2**32 - 512, 2**32 - 2, 2**32 - 1],
                     np.uint32)
    u = kernels.unit_interval(tf.constant(edges)).numpy()
    assert u.dtype == np.float32
    assert np.all((u > 0) & (u < 1)), u
    assert u[-1] == np.float32(1 - 2.0**-24) and u[0] == np.float32(2.0**-24)
    noise = -np.log(-np.log(u.astype(np.float64)))
    assert np.all(np.isfinite(noise)) and noise.max() < 17
    # The grid is exact: 2**23 distinct, evenly spaced values, in the order of the bits.
    assert np.all(np.diff(kernels.unit_interval(tf.constant(
        np.arange(0, 2**32, 2**9, dtype=np.uint64).astype(np.uint32)[::4099])).numpy()) > 0)


def _random_counters(rng, n):
    steps = rng.integers(0, 2**40, n, dtype=np.uint64)
    examples = rng.integers(0, 2**24, n, dtype=np.uint64)
    return steps, examples


def test_seed_keys_never_collide_over_realistic_step_and_example_ranges():
    from electra_tf.objective import sampling
    rng = np.random.default_rng(0)
    # 2**20 random (step < 2**40, example < 2**24) pairs plus whole 256-step blocks at batch 256
    # (the blocks the old key layout made collide). A key with 32 bits of entropy per stream, as
    # before, gives ~2**20 · 2**20 / 2**33 ≈ 128 collisions among the random pairs alone.
    steps, examples = _random_counters(rng, 2**20)
    block_steps = np.repeat(np.arange(0, 1024, dtype=np.uint64), 256) + np.uint64(2**30)
    block_examples = np.tile(np.arange(256, dtype=np.uint64), 1024)
    steps = np.concatenate([steps, block_steps])
    examples = np.concatenate([examples, block_examples])
    counters = {(int(s), int(e)) for s, e in zip(steps, examples)}
    for seed, stream in ((0, sampling.MASKING_STREAM), (2**32 - 1, sampling.SAMPLING_STREAM)):
        pairs = tf.stack([
            tf.fill([steps.size], tf.constant(seed + (stream << 32), tf.int64)),
            tf.bitcast(tf.constant(steps << np.uint64(24) | examples, tf.uint64), tf.int64),
        ], axis=1)
        keys = kernels.seed_key(pairs).numpy().astype(np.uint64)
        packed = keys[:, 0] << np.uint64(32) | keys[:, 1]
        assert np.unique(packed).size == len(counters)
        # example_seeds builds the same pairs from (step, example_index).
        np.testing.assert_array_equal(
            sampling.example_seeds(seed, stream, tf.constant(int(steps[7]), tf.int64),
                                   tf.constant([int(examples[7])]))[0], pairs[7])
