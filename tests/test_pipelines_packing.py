"""Packing without losing text, and the stateless hashing behind it (pipelines/packing.py)."""

import numpy as np
import pytest

from pipelines import hashing
from pipelines.packing import MIN_TARGET, SpecialIds, pack

SPECIAL = SpecialIds(pad=0, cls=2, sep=3)


def _splitmix64_reference(x: int) -> int:
    """Vigna's splitmix64 finalizer in plain Python integers."""
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_mix64_is_splitmix64():
    # The first output of splitmix64 seeded with 0 (xoshiro reference code).
    assert int(hashing.mix64(0)) == 0xE220A8397B1DCDAF
    values = [0, 1, 2**32, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]
    assert hashing.mix64(np.array(values, np.uint64)).tolist() == [
        _splitmix64_reference(v) for v in values]


def test_source_key_depends_on_seed_and_name_only():
    assert hashing.source_key(0, "a/b.txt") == hashing.source_key(0, "a/b.txt")
    assert hashing.source_key(0, "a/b.txt") != hashing.source_key(1, "a/b.txt")
    assert hashing.source_key(0, "a/b.txt") != hashing.source_key(0, "a/c.txt")
    u = hashing.unit_float(hashing.hash_combine(np.uint64(7), np.arange(100_000)))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def _unpack(packed, row):
    """(segment A tokens, segment B tokens) of one example, checking its layout."""
    ids, seg, mask = (packed.token_ids[row], packed.segment_ids[row], packed.padding_mask[row])
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any()
    assert (ids[n:] == SPECIAL.pad).all() and not seg[n:].any()
    assert ids[0] == SPECIAL.cls and ids[n - 1] == SPECIAL.sep
    seps = np.flatnonzero(ids[:n] == SPECIAL.sep)
    a = ids[1:seps[0]]
    b = ids[seps[0] + 1:n - 1] if len(seps) == 2 else ids[:0]
    assert len(seps) in (1, 2) and (len(seps) == 1 or len(b) > 0)
    # Segment 0: [CLS] A [SEP]; segment 1: B [SEP].
    assert (seg[:len(a) + 2] == 0).all() and (seg[len(a) + 2:n] == 1).all()
    return a, b


def _random_parts(rng, num_parts, max_len):
    lengths = rng.integers(0, max_len, num_parts)
    tokens = rng.integers(10, 1000, lengths.sum())
    boundaries = np.unique(rng.integers(1, max(2, lengths.sum()), lengths.sum() // 20 + 1))
    return tokens, lengths, boundaries


def test_pack_writes_every_token_once_in_order_and_never_across_parts():
    rng = np.random.default_rng(0)
    tokens, lengths, boundaries = _random_parts(rng, 60, 700)
    keys = hashing.hash_combine(np.uint64(1), np.arange(60))
    packed = pack(tokens, lengths, keys, boundaries, 32, SPECIAL)
    starts = np.cumsum(lengths) - lengths
    for p in range(60):
        rows = np.flatnonzero(packed.part == p)
        text = [t for r in rows for seg in _unpack(packed, r) for t in seg]
        assert text == tokens[starts[p]:starts[p] + lengths[p]].tolist()
        assert packed.content[rows].sum() == lengths[p]
        # Only the last example of a part may end before its budget (target - 2 or - 3).
        length = packed.padding_mask[rows].sum(axis=1)
        assert (length[:-1] >= MIN_TARGET).all()
    assert set(packed.part.tolist()) == set(np.flatnonzero(lengths).tolist())


def test_pack_statistics_match_the_reference_recipe():
    rng = np.random.default_rng(1)
    tokens, lengths, boundaries = _random_parts(rng, 400, 4000)
    packed = pack(tokens, lengths, hashing.hash_combine(np.uint64(2), np.arange(400)),
                  boundaries, 64, SPECIAL)
    last = np.r_[packed.part[1:] != packed.part[:-1], True]  # a part's last example
    full = ~last
    single = np.array([len(_unpack(packed, r)[1]) == 0 for r in range(len(packed.part))])
    length = packed.padding_mask.sum(axis=1)
    # 10% single segment; 5% of targets shorter than seq_length (uniform in [5, 64]).
    assert 0.085 < single[full].mean() < 0.115
    assert 0.04 < (length[full] < 64).mean() < 0.06
    assert length.min() >= 3 and length.max() == 64
    # Padding only where a part ends or a target was short.
    assert packed.padding_mask[full].mean() > 0.97


def test_pack_splits_a_and_b_at_unit_boundaries_when_there_are_some():
    tokens = np.arange(100, 400)
    boundaries = np.arange(10, 300, 10)  # a unit every 10 tokens
    packed = pack(tokens, np.array([300]), np.array([5], np.uint64), boundaries, 40, SPECIAL)
    for r in range(len(packed.part)):
        a, b = _unpack(packed, r)
        start, end = a[0] - 100, a[0] - 100 + len(a) + len(b)
        if len(b) and (start // 10 + 1) * 10 < end:  # the window holds a unit boundary
            assert (b[0] - 100) % 10 == 0  # B starts where a unit starts
    # Without boundaries, B starts in the middle of the window.
    packed = pack(tokens, np.array([300]), np.array([5], np.uint64), np.array([], np.int64),
                  40, SPECIAL)
    for r in range(len(packed.part)):
        a, b = _unpack(packed, r)
        if len(b):
            assert len(a) - len(b) in (0, 1)


def test_pack_is_independent_of_batching():
    """A part packs the same alone or among others (Beam may batch documents any way)."""
    rng = np.random.default_rng(2)
    tokens, lengths, boundaries = _random_parts(rng, 5, 300)
    keys = hashing.hash_combine(np.uint64(3), np.arange(5))
    together = pack(tokens, lengths, keys, boundaries, 16, SPECIAL)
    starts = np.cumsum(lengths) - lengths
    for p in range(5):
        lo, hi = starts[p], starts[p] + lengths[p]
        inner = boundaries[(boundaries > lo) & (boundaries < hi)] - lo
        alone = pack(tokens[lo:hi], lengths[p:p + 1], keys[p:p + 1], inner, 16, SPECIAL)
        rows = together.part == p
        np.testing.assert_array_equal(alone.token_ids, together.token_ids[rows])
        np.testing.assert_array_equal(alone.segment_ids, together.segment_ids[rows])
        np.testing.assert_array_equal(alone.key, together.key[rows])


def test_pack_golden_example():
    """Fixed keys give fixed examples: a change here changes every dataset ever built.

    Budget 9 (12 − 3) per window: [0, 9) splits at the boundary after its middle (6),
    [9, 18) at 17, [18, 27) at 25; [27, 30) has no inner boundary: split at its middle (29).
    """
    tokens = np.arange(100, 130)
    packed = pack(tokens, np.array([30]), np.array([42], np.uint64), np.array([6, 17, 25]), 12,
                  SPECIAL)
    assert packed.token_ids.tolist() == [
        [2, 100, 101, 102, 103, 104, 105, 3, 106, 107, 108, 3],
        [2, 109, 110, 111, 112, 113, 114, 115, 116, 3, 117, 3],
        [2, 118, 119, 120, 121, 122, 123, 124, 3, 125, 126, 3],
        [2, 127, 128, 3, 129, 3, 0, 0, 0, 0, 0, 0]]
    assert packed.segment_ids[0].tolist() == [0] * 8 + [1] * 4


def test_pack_refuses_too_short_sequences():
    with pytest.raises(ValueError, match="seq_length=6"):
        pack(np.arange(3), np.array([3]), np.array([1], np.uint64), np.array([]), 6, SPECIAL)
