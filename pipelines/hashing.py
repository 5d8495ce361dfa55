"""Stateless 64-bit hashing: every random choice of the pipeline is a function of its keys.

An example's key is ``hash(seed, source name) → document index → part index → example index``
(:func:`source_key`, then :func:`hash_combine` once per level). Each decision takes its own
stream: ``unit_float(hash_combine(key, purpose))``. Nothing depends on bundle order, worker
count or runner, so the same input and seed give the same examples, shards and record order
anywhere.
"""

from __future__ import annotations

import hashlib

import numpy as np

# The purposes of hashes derived from a key: one independent stream of randomness each.
SINGLE_SEGMENT, SHORT_TARGET, SHORT_LENGTH, SPLIT_AFTER = 1, 2, 3, 4  # packing, per example
SHARD, ORDER = 5, 6  # shard assignment and position in the shard, per example
VALIDATION = 7  # held-out split, per document


def mix64(x) -> np.ndarray:
    """splitmix64's finalizer: a bijective 64-bit mix (uint64 arithmetic wraps by design)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_combine(key, value) -> np.ndarray:
    """A new 64-bit key from ``key`` and a non-negative integer ``value`` (arrays broadcast)."""
    return mix64(np.asarray(key, np.uint64) ^ mix64(np.asarray(value, np.uint64)))


def unit_float(key) -> np.ndarray:
    """A float64 in [0, 1) from each 64-bit key: its top 53 bits, as a binary fraction."""
    return (np.asarray(key, np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def source_key(seed: int, source: str) -> np.uint64:
    """The key of a source from the run's seed and the source's stable name."""
    digest = hashlib.blake2b(f"{seed}\0{source}".encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))
