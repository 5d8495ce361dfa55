"""Batch tf.train.Example serialization, record batches, shard order (pipelines/records.py)."""

import numpy as np
import tensorflow as tf

from pipelines.records import (RecordBatch, serialize_examples, shard_name, shard_of, shard_order,
                               shard_pattern, varints)


def test_varints_match_protobuf():
    values = [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35, 2**63 - 1, 2**63, 2**64 - 1]
    flat, lengths = varints(np.array(values, np.uint64))
    # An Int64List / packed field is tag 0x0A, payload length, then the varints.
    expected = tf.train.Int64List(value=[v - 2**64 if v >= 2**63 else v for v in values])
    serialized = expected.SerializeToString()
    assert serialized[0] == 0x0A and serialized.endswith(flat.tobytes())
    assert lengths.tolist() == [1, 1, 1, 2, 2, 2, 3, 4, 6, 9, 10, 10]


def test_serialize_examples_parse_back_exactly():
    rng = np.random.default_rng(0)
    features = {"token_ids": rng.integers(0, 300_000, (5, 9)),
                "segment_ids": rng.integers(0, 2, (5, 9)),
                "padding_mask": np.ones((5, 9), np.int64),
                "a_longer_feature_name": rng.integers(0, 2**40, (5, 3))}
    data, offsets = serialize_examples(features)
    assert offsets[0] == 0 and offsets[-1] == len(data) and len(offsets) == 6
    for i in range(5):
        record = data[offsets[i]:offsets[i + 1]]
        proto = tf.train.Example(features=tf.train.Features(feature={
            k: tf.train.Feature(int64_list=tf.train.Int64List(value=v[i]))
            for k, v in features.items()}))
        assert tf.train.Example.FromString(record) == proto
    parsed = tf.io.parse_example(
        [data[offsets[i]:offsets[i + 1]] for i in range(5)],
        {k: tf.io.FixedLenFeature([v.shape[1]], tf.int64) for k, v in features.items()})
    for k, v in features.items():
        np.testing.assert_array_equal(parsed[k].numpy(), v)


def _batch(keys, split="train"):
    records = [b"r%d" % k for k in keys]
    offsets = np.cumsum([0] + [len(r) for r in records], dtype=np.int64)
    return RecordBatch(split, b"".join(records), offsets, np.array(keys, np.uint64))


def test_record_batch_take_and_concat():
    batch = RecordBatch.concat("train", [_batch([1, 2]), _batch([]), _batch([30, 4])])
    assert batch.records() == [b"r1", b"r2", b"r30", b"r4"]
    taken = batch.take(np.array([3, 0]))
    assert taken.records() == [b"r4", b"r1"] and taken.keys.tolist() == [4, 1]
    assert len(RecordBatch.concat("train", [])) == 0


def test_shard_order_ignores_arrival_order_and_breaks_ties_by_bytes():
    keys = list(range(50))
    forward = RecordBatch.concat("train", [_batch(keys[:20]), _batch(keys[20:])])
    backward = RecordBatch.concat("train", [_batch(keys[25:][::-1]), _batch(keys[:25])])
    assert (forward.records(shard_order(forward))
            == backward.records(shard_order(backward)))
    # Two records with one key (a 64-bit collision): still one order, whatever the input order.
    same = RecordBatch("train", b"bbaa", np.array([0, 2, 4]), np.array([7, 7], np.uint64))
    flipped = RecordBatch("train", b"aabb", np.array([0, 2, 4]), np.array([7, 7], np.uint64))
    assert same.records(shard_order(same)) == flipped.records(shard_order(flipped)) == [
        b"aa", b"bb"]


def test_shard_of_is_uniform_and_in_range():
    shards = shard_of(np.arange(40_000, dtype=np.uint64), 8)
    assert shards.min() == 0 and shards.max() == 7
    assert np.bincount(shards).min() > 4_700  # 5,000 expected per shard


def test_shard_names():
    assert shard_name("train", 3, 32, "") == "train-00003-of-00032.tfrecord"
    assert shard_name("validation", 0, 1, "GZIP") == "validation-00000-of-00001.tfrecord.gz"
    assert shard_pattern("train", 32, "") == "train-*-of-00032.tfrecord"
