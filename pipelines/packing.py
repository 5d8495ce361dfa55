"""Packing token streams into fixed-length ELECTRA examples, vectorized, without losing text.

The reference (google-research/electra ``build_pretraining_dataset.py``, ``ExampleBuilder``)
collects sentences until they reach a target length, then cuts the example to its budget and
drops the overflow; a document whose text arrives as one long line loses almost all of it. Here
every document part is instead a stream of tokens cut into consecutive windows, so every token
is written exactly once:

* the target length is ``seq_length`` or, with probability 5%, uniform in ``[5, seq_length]``
  (reference: ``random.randint(5, max_length)`` with ``short_seq_prob = 0.05``);
* 10% of examples are a single segment ``[CLS] A [SEP]`` (budget ``target − 2``); the others
  are ``[CLS] A [SEP] B [SEP]`` (budget ``target − 3``), as the reference's
  ``first_segment_target_length = 100000`` branch;
* A/B are split at the unit boundary (end of a line, or after ``.``, ``!``, ``?``) nearest the
  middle of the window: the one before it or the one after it with equal probability (the
  reference lets the sentence that crosses the middle join A with probability 1/2). Without an
  inner boundary the split is the middle token. No next-sentence labels;
* a unit longer than the room left continues in the next example; examples never cross
  document parts.

Every random choice is a stateless hash of ``(part key, example index, purpose)``
(:func:`hash_combine`), so examples do not depend on how documents were batched or on which
worker packed them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipelines import hashing
from pipelines.hashing import hash_combine, unit_float

SHORT_TARGET_PROB = 0.05  # reference: short_seq_prob
SINGLE_SEGMENT_PROB = 0.1  # reference: "small chance to only have one segment"
MIN_TARGET = 5  # reference: random.randint(5, max_length)
MIN_SEQ_LENGTH = 8

@dataclasses.dataclass
class Packed:
    """Examples packed from a batch of document parts.

    Attributes:
      token_ids, segment_ids, padding_mask: int64 ``[n, seq_length]``.
      part: which input part each example comes from, int64 ``[n]``.
      key: each example's 64-bit key ``hash(part key, example index in the part)``, ``[n]``.
      content: tokens of text (without ``[CLS]``/``[SEP]``) in each example, int64 ``[n]``.
    """

    token_ids: np.ndarray
    segment_ids: np.ndarray
    padding_mask: np.ndarray
    part: np.ndarray
    key: np.ndarray
    content: np.ndarray


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Ids of the tokens packing inserts (read from the vocabulary, never hard-coded)."""

    pad: int
    cls: int
    sep: int


def pack(tokens: np.ndarray, part_lengths: np.ndarray, part_keys: np.ndarray,
         boundaries: np.ndarray, seq_length: int, special: SpecialIds) -> Packed:
    """Cuts the token streams of document parts into examples (see the module docstring).

    Args:
      tokens: the parts' tokens, concatenated: int ``[total]``.
      part_lengths: tokens per part, int ``[parts]`` (zeros allowed; they give no example).
      part_keys: one 64-bit key per part, uint64 ``[parts]``.
      boundaries: positions in ``tokens`` where A/B may be split (ends of units), sorted.
      seq_length: length of every example, at least ``MIN_SEQ_LENGTH``.
      special: ids of ``[PAD]``, ``[CLS]``, ``[SEP]``.

    Returns:
      The examples of every part, parts in order, each part's examples in text order.
    """
    if seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"seq_length={seq_length} must be at least {MIN_SEQ_LENGTH}")
    part_lengths = np.asarray(part_lengths, np.int64)
    part_starts = np.cumsum(part_lengths) - part_lengths
    part, index, budget, key = _windows(part_lengths, np.asarray(part_keys, np.uint64),
                                        seq_length)
    # Consecutive windows of a part: each starts where the budgets before it end.
    running = np.cumsum(budget) - budget
    offset = running - running[index == 0][part]  # every part has candidates, index 0 first
    keep = offset < part_lengths[part]
    part, index, budget, key, offset = (a[keep] for a in (part, index, budget, key, offset))
    start = part_starts[part] + offset
    end = np.minimum(start + budget, part_starts[part] + part_lengths[part])
    single = unit_float(hash_combine(key, hashing.SINGLE_SEGMENT)) < SINGLE_SEGMENT_PROB
    split = np.where(single, end, _split_points(start, end, key, np.asarray(boundaries)))
    return _assemble(np.asarray(tokens), start, split, end, part, key, seq_length, special)


def _windows(part_lengths: np.ndarray, part_keys: np.ndarray,
             seq_length: int) -> tuple[np.ndarray, ...]:
    """Enough candidate windows per part to cover it: ``(part, index, budget, key)``.

    Budgets are random (short targets, single segments), so the count needed is found by
    doubling the guess for the parts it does not cover yet (rarely more than one round).
    """
    count = part_lengths // (seq_length - 3) + 2
    while True:
        part = np.repeat(np.arange(len(part_lengths)), count)
        index = np.arange(len(part)) - np.repeat(np.cumsum(count) - count, count)
        key = hash_combine(part_keys[part], index)
        single = unit_float(hash_combine(key, hashing.SINGLE_SEGMENT)) < SINGLE_SEGMENT_PROB
        short = unit_float(hash_combine(key, hashing.SHORT_TARGET)) < SHORT_TARGET_PROB
        short_length = MIN_TARGET + (hash_combine(key, hashing.SHORT_LENGTH)
                                     % np.uint64(seq_length - MIN_TARGET + 1)).astype(np.int64)
        target = np.where(short, short_length, seq_length)
        budget = target - np.where(single, 2, 3)
        covered = np.bincount(part, weights=budget, minlength=len(count)) >= part_lengths
        if covered.all():
            return part, index, budget, key
        count = np.where(covered, count, 2 * count)


def _split_points(start: np.ndarray, end: np.ndarray, key: np.ndarray,
                  boundaries: np.ndarray) -> np.ndarray:
    """Where B starts in each window ``[start, end)``: the inner boundary before or after the
    middle (chosen by the key), the middle token without one; ``end`` if under 2 tokens."""
    middle = start + (end - start + 1) // 2
    if len(boundaries):
        before_i = np.searchsorted(boundaries, middle, side="right") - 1
        after_i = np.searchsorted(boundaries, middle, side="left")
        before = boundaries[np.maximum(before_i, 0)]
        after = boundaries[np.minimum(after_i, len(boundaries) - 1)]
        has_before = (before_i >= 0) & (before > start)
        has_after = (after_i < len(boundaries)) & (after < end)
    else:
        before = after = middle
        has_before = has_after = np.zeros(len(start), bool)
    take_after = unit_float(hash_combine(key, hashing.SPLIT_AFTER)) < 0.5
    split = np.where(has_before & has_after, np.where(take_after, after, before),
                     np.where(has_before, before, np.where(has_after, after, middle)))
    return np.where(end - start >= 2, split, end)


def _assemble(tokens, start, split, end, part, key, seq_length, special) -> Packed:
    """``[CLS] tokens[start:split] [SEP] (tokens[split:end] [SEP])`` padded, as matrices."""
    j = np.arange(seq_length)[None, :]
    a = (split - start)[:, None]
    b = (end - split)[:, None]
    in_a = (j >= 1) & (j <= a)
    in_b = (j >= a + 2) & (j < a + 2 + b)
    end_b = (b > 0) & (j == a + 2 + b)
    text = np.take(tokens, np.where(in_a, start[:, None] + j - 1,
                                    np.where(in_b, split[:, None] + j - a - 2, 0)))
    token_ids = np.select([j == 0, in_a, j == a + 1, in_b, end_b],
                          [special.cls, text, special.sep, text, special.sep], special.pad)
    return Packed(
        token_ids=token_ids.astype(np.int64),
        segment_ids=(in_b | end_b).astype(np.int64),
        padding_mask=((j <= a + 1) | in_b | end_b).astype(np.int64),
        part=part, key=key, content=end - start)
