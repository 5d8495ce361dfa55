"""``tf.train.Example`` serialization of whole batches at once, and the shard file names.

Building one ``tf.train.Example`` proto per record costs ~100 µs in Python — more than
tokenizing it. The records here hold nothing but fixed-length int64 lists, so we write their
protobuf wire format directly with numpy, for all examples of a batch at once; the records parse
to the same ``tf.train.Example`` as the proto library's (``tests/test_pipelines_records.py``).

Wire format (https://protobuf.dev/programming-guides/encoding/), per example::

    Example  { 1: Features { 1: map entry { 1: key, 2: Feature { 3: Int64List { 1: packed } } } } }

Every field is length-delimited (tag byte, varint length, payload), so a record is the
concatenation, per row, of constant tag bytes, per-row varint lengths and the packed values;
the lengths are computed from the inside out and every byte is placed once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipelines import hashing

_MAX_VARINT_BYTES = 10


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varint encoding of non-negative integers.

    Args:
      values: integers ``[n]`` (any integer dtype, all ``>= 0``).

    Returns:
      ``(flat, lengths)``: the encodings concatenated (uint8) and each one's byte count [n].
    """
    v = np.asarray(values).astype(np.uint64).reshape(-1)
    lengths = np.ones(v.shape, np.int64)
    width = 1  # bytes of the longest encoding
    while width < _MAX_VARINT_BYTES:
        longer = v >= np.left_shift(np.uint64(1), np.uint64(7 * width))
        if not longer.any():
            break
        lengths += longer
        width += 1
    if width == 1:  # every value fits in 7 bits (segment ids, padding masks)
        return v.astype(np.uint8), lengths
    starts = np.cumsum(lengths) - lengths
    flat = np.empty(int(lengths.sum()), np.uint8)
    rows = np.arange(len(v))
    for byte in range(width):
        # Byte ``byte`` of every value that has one: 7 bits, high bit set when more follow.
        if byte:
            rows = rows[lengths[rows] > byte]
        group = ((v[rows] >> np.uint64(7 * byte)) & np.uint64(0x7F)).astype(np.uint8)
        group[lengths[rows] > byte + 1] |= 0x80
        flat[starts[rows] + byte] = group
    return flat, lengths


def _ragged_concat(columns: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise concatenation of ragged byte columns.

    Args:
      columns: ``(flat bytes, row lengths [n])`` per column; row i of the result is row i of
        column 0, then row i of column 1, ...

    Returns:
      ``(flat bytes, offsets [n + 1])`` of the concatenated rows.
    """
    lengths = np.stack([np.asarray(l, np.int64) for _, l in columns], axis=1)  # [n, columns]
    row_lengths = lengths.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(row_lengths)])
    out = np.empty(int(offsets[-1]), np.uint8)
    # Where each column's piece of each row starts in ``out``.
    starts = offsets[:-1, None] + np.cumsum(lengths, axis=1) - lengths
    for c, (flat, col_lengths) in enumerate(columns):
        col_lengths = np.asarray(col_lengths, np.int64)
        if (col_lengths == 1).all():  # tag bytes and most varints: one byte per row
            out[starts[:, c]] = flat
            continue
        # Byte k of the column lands at k + (row start in out - row start in flat).
        shift = starts[:, c] - (np.cumsum(col_lengths) - col_lengths)
        out[np.arange(len(flat)) + np.repeat(shift, col_lengths)] = flat
    return out, offsets


def _constant(data: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A column holding the same bytes in every one of ``n`` rows."""
    return np.tile(np.frombuffer(data, np.uint8), n), np.full(n, len(data), np.int64)


def _length_prefixed(inner: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """For fields holding ``inner`` bytes per row: their varint length column, and their whole
    size (tag byte + varint + inner)."""
    flat, lengths = varints(inner)
    return (flat, lengths), 1 + lengths + inner


def serialize_examples(features: dict[str, np.ndarray]) -> tuple[bytes, np.ndarray]:
    """Serializes rows of int64 features as ``tf.train.Example`` records.

    Args:
      features: name → non-negative integers ``[n, length]`` (lengths may differ per feature).

    Returns:
      ``(data, offsets)``: record i is ``data[offsets[i]:offsets[i + 1]]``; offsets int64
      ``[n + 1]``.
    """
    n = len(next(iter(features.values())))
    columns = []  # every column of a record after the Example header, in order
    features_size = np.zeros(n, np.int64)
    for name, values in features.items():
        values = np.asarray(values)
        flat, lengths = varints(values.reshape(-1))
        payload = (flat, lengths.reshape(values.shape).sum(axis=1))
        # Message sizes from the inside out: Int64List, Feature, map entry.
        packed_length, int64_list_size = _length_prefixed(payload[1])
        int64_list_length, feature_size = _length_prefixed(int64_list_size)
        feature_length, value_field_size = _length_prefixed(feature_size)
        key = name.encode("utf-8")
        key_field = b"\x0A" + varints(np.array([len(key)]))[0].tobytes() + key
        entry_length, entry_field_size = _length_prefixed(len(key_field) + value_field_size)
        features_size += entry_field_size
        columns += [_constant(b"\x0A", n), entry_length,       # Features.feature = 1 (entry)
                    _constant(key_field, n),                   # entry.key = 1
                    _constant(b"\x12", n), feature_length,     # entry.value = 2 (Feature)
                    _constant(b"\x1A", n), int64_list_length,  # Feature.int64_list = 3
                    _constant(b"\x0A", n), packed_length,      # Int64List.value = 1, packed
                    payload]
    header = [_constant(b"\x0A", n), varints(features_size)]  # Example.features = 1
    data, offsets = _ragged_concat(header + columns)
    return data.tobytes(), offsets


@dataclasses.dataclass
class RecordBatch:
    """Serialized examples of one split, with the keys that place them in shards.

    Attributes:
      split: ``train`` or ``validation``.
      data: the records, concatenated.
      offsets: record i is ``data[offsets[i]:offsets[i + 1]]``; int64 ``[n + 1]``.
      keys: each example's 64-bit key (``pipelines.packing.Packed.key``); uint64 ``[n]``.
    """

    split: str
    data: bytes
    offsets: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def records(self, order=None) -> list[bytes]:
        """The records as bytes, in ``order`` (indices) or as stored."""
        o = self.offsets.tolist()
        return [self.data[o[i]:o[i + 1]] for i in (range(len(self)) if order is None else order)]

    def take(self, indices: np.ndarray) -> "RecordBatch":
        """The records at ``indices``, in that order."""
        indices = np.asarray(indices, np.int64)
        lengths = np.diff(self.offsets)[indices]
        starts = self.offsets[:-1][indices]
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        data = np.frombuffer(self.data, np.uint8)[np.repeat(starts, lengths) + within]
        return RecordBatch(self.split, data.tobytes(),
                           np.concatenate([[0], np.cumsum(lengths)]), self.keys[indices])

    @staticmethod
    def concat(split: str, batches: list["RecordBatch"]) -> "RecordBatch":
        offsets = [np.zeros(1, np.int64)]
        end = 0
        for b in batches:
            offsets.append(b.offsets[1:] + end)
            end += int(b.offsets[-1])
        keys = [b.keys for b in batches] or [np.zeros(0, np.uint64)]
        return RecordBatch(split, b"".join(b.data for b in batches),
                           np.concatenate(offsets).astype(np.int64), np.concatenate(keys))


def shard_of(keys: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each example key, uniform over ``[0, num_shards)``."""
    return (hashing.hash_combine(keys, hashing.SHARD) % np.uint64(num_shards)).astype(np.int64)


def shard_order(batch: RecordBatch) -> np.ndarray:
    """Indices of ``batch`` in their order within a shard: by a hash of the example key.

    Ties (a 64-bit collision) are broken by the record bytes, so the order is a function of
    the records alone, never of the order they arrived in.
    """
    order_keys = hashing.hash_combine(batch.keys, hashing.ORDER)
    order = np.argsort(order_keys, kind="stable")
    sorted_keys = order_keys[order]
    if len(order) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any():
        records = batch.records()
        order = np.array(sorted(order.tolist(), key=lambda i: (int(order_keys[i]), records[i])),
                         np.int64)
    return order


def shard_name(split: str, index: int, num_shards: int, compression: str) -> str:
    """``train-00003-of-00032.tfrecord`` (``.gz`` appended for GZIP)."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord" + (".gz" if compression else "")


def shard_pattern(split: str, num_shards: int, compression: str) -> str:
    """The glob of one split's shards, as ``metadata.json`` lists it."""
    return f"{split}-*-of-{num_shards:05d}.tfrecord" + (".gz" if compression else "")
