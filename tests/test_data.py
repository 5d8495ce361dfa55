"""Tests for electra_tf.training.input and .records: real TFRecords written per
docs/architecture.md, read back."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf

from electra_tf.training import input as input_lib
from electra_tf.training import records

SEQ = 32


def take(dataset, n):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(n)]


def test_reads_our_format_in_order(tmp_path, tokenizer, corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 40)
    pattern = write_data(tmp_path, tokenizer, examples, num_shards=1)
    shards = input_lib.find_shards(pattern, SEQ, tokenizer)
    assert shards.format == "electra_tf" and shards.num_examples == 40
    batches = take(input_lib.pretraining_dataset(shards, 8, seed=0, training=False), 6)
    assert sorted(batches[0]) == ["example_index", "padding_mask", "segment_ids", "token_ids"]
    for b in batches:
        assert all(v.dtype == np.int32 for v in b.values())
        assert b["token_ids"].shape == (8, SEQ) and b["example_index"].tolist() == list(range(8))
    # Evaluation order is the file order, repeated: batch 5 starts the second pass.
    for k in records.FEATURES:
        np.testing.assert_array_equal(np.concatenate([b[k] for b in batches[:5]]), examples[k])
        np.testing.assert_array_equal(batches[5][k], examples[k][:8])
    assert batches[0]["token_ids"][0, 0] == tokenizer.cls_id


def test_reads_original_format_under_our_names(tmp_path, tokenizer, corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 16)
    pattern = write_data(tmp_path, tokenizer, examples, num_shards=2, fmt="original",
                         compression="GZIP")
    with gzip.open(sorted(tf.io.gfile.glob(pattern))[0]) as f:  # really GZIP, really input_ids
        assert b"input_ids" in f.read()
    shards = input_lib.find_shards(str(tmp_path), SEQ, tokenizer)  # a directory: its train split
    (batch,) = take(input_lib.pretraining_dataset(shards, 16, seed=0, training=False), 1)
    order = np.argsort(np.r_[0:16:2, 1:16:2])  # shard 0 holds the even examples, then shard 1
    for k in records.FEATURES:
        np.testing.assert_array_equal(batch[k][order], examples[k])


def test_training_order_is_a_function_of_the_seed(tmp_path, tokenizer, corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 64)
    shards = input_lib.find_shards(write_data(tmp_path, tokenizer, examples), SEQ, tokenizer)

    def first_tokens(seed, shuffle_buffer=16):
        ds = input_lib.pretraining_dataset(shards, 8, seed=seed, shuffle_buffer=shuffle_buffer,
                                      cycle_length=2)
        return np.stack([b["token_ids"] for b in take(ds, 10)])

    a, b, c = first_tokens(7), first_tokens(7), first_tokens(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Without the example buffer, the first 8 batches are one pass over the shuffled files:
    # every example exactly once, in another order than the buffered one.
    unbuffered = first_tokens(7, shuffle_buffer=1)
    seen = sorted(map(tuple, unbuffered[:8].reshape(-1, SEQ)))
    assert seen == sorted(map(tuple, examples["token_ids"]))
    assert not np.array_equal(unbuffered, a)


def test_iterator_checkpoint_resumes_exactly(tmp_path, tokenizer, corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 64)
    shards = input_lib.find_shards(write_data(tmp_path / "d", tokenizer, examples), SEQ, tokenizer)
    make = lambda: iter(input_lib.pretraining_dataset(shards, 8, seed=3, shuffle_buffer=16,
                                                 cycle_length=2))
    iterator = make()
    for _ in range(5):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt" / "it"))
    expected = [next(iterator)["token_ids"].numpy() for _ in range(6)]
    restored = make()
    tf.train.Checkpoint(iterator=restored).restore(path).assert_consumed()
    for want in expected:
        np.testing.assert_array_equal(next(restored)["token_ids"].numpy(), want)


def test_metadata_mismatches_are_all_named(tmp_path, tokenizer, corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 8)
    settings = dict(tokenizer.settings(), vocab_sha256="0" * 64, lower_case=False)
    pattern = write_data(tmp_path, tokenizer, examples, num_shards=1,
                         metadata_changes={"seq_length": 64, "tokenizer": settings})
    with pytest.raises(input_lib.DataError) as e:
        input_lib.find_shards(pattern, SEQ, tokenizer)
    message = str(e.value)
    assert str(tmp_path / "metadata.json") in message
    assert "seq_length: data has 64, config data.seq_length=32" in message
    assert "vocab_sha256" in message and "lower_case" in message


def test_unfinished_directory_and_no_match_are_refused(tmp_path, tokenizer, corpus_examples,
                                                       write_data):
    pattern = write_data(tmp_path, tokenizer, corpus_examples(tokenizer, 8), num_shards=1,
                         completed=False)
    with pytest.raises(input_lib.DataError, match=f"{tmp_path}: no COMPLETED marker"):
        input_lib.find_shards(pattern, SEQ, tokenizer)
    with pytest.raises(input_lib.DataError, match="no files match"):
        input_lib.find_shards(str(tmp_path / "nothing-*"), SEQ, tokenizer)
    with pytest.raises(input_lib.DataError, match=r"also matches .*metadata.json.*give the shards"):
        input_lib.find_shards(str(tmp_path / "*"), SEQ, tokenizer)


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_damaged_shard_is_named_or_skipped(tmp_path, tokenizer, compression, corpus_examples,
                                           write_data):
    examples = corpus_examples(tokenizer, 48)
    pattern = write_data(tmp_path, tokenizer, examples, num_shards=2, compression=compression)
    files = sorted(tf.io.gfile.glob(pattern))
    raw = bytearray(open(files[1], "rb").read())
    raw[len(raw) // 2] ^= 0xFF  # flip one byte in the middle of shard 1
    open(files[1], "wb").write(bytes(raw))
    assert records.scan_shard(files[0], compression) == records.ShardScan(files[0], 24)
    damaged = records.scan_shard(files[1], compression)
    assert damaged.error and damaged.records < 24

    shards = input_lib.find_shards(pattern, SEQ, tokenizer)
    with pytest.raises(tf.errors.DataLossError) as read_error:
        take(input_lib.pretraining_dataset(shards, 8, seed=0, training=False), 6)
    explained = str(input_lib.explain_read_error(shards, read_error.value))
    assert files[1] in explained and files[0] not in explained
    assert f"after {damaged.records} good records" in explained and "--skip_corrupt" in explained

    skipping = input_lib.find_shards(pattern, SEQ, tokenizer, skip_corrupt=True)
    ((path, kept),) = skipping.readable_records
    # GZIP loses the whole inflate buffer that fails, so possibly fewer than the scan found.
    assert path == files[1] and (kept == damaged.records if not compression
                                 else 0 <= kept <= damaged.records)
    ds = input_lib.pretraining_dataset(skipping, 1, seed=0, training=False)
    got = np.concatenate([b["token_ids"] for b in take(ds, 24 + kept + 1)])  # pass + 1, no error
    want = np.concatenate([examples["token_ids"][0::2], examples["token_ids"][1::2][:kept],
                           examples["token_ids"][:1]])
    np.testing.assert_array_equal(got, want)


def test_cut_inside_a_record_header_is_reported(tmp_path, tokenizer, corpus_examples, write_data):
    # TensorFlow's reader treats this silently as the end of the file; the scan does not.
    pattern = write_data(tmp_path, tokenizer, corpus_examples(tokenizer, 8), num_shards=1)
    (path,) = tf.io.gfile.glob(pattern)
    raw = open(path, "rb").read()
    end = 0
    for _ in range(3):  # length (8 bytes), its CRC (4), data, data CRC (4)
        end += 16 + struct.unpack("<Q", raw[end:end + 8])[0]
    open(path, "wb").write(raw[:end + 5])
    assert sum(1 for _ in tf.data.TFRecordDataset(path)) == 3
    assert records.scan_shard(path) == records.ShardScan(path, 3,
                                                   f"truncated record header at byte {end}")


def test_input_pipelines_read_disjoint_files_and_resume_by_file(tmp_path, tokenizer,
                                                                corpus_examples, write_data):
    examples = corpus_examples(tokenizer, 64)
    shards = input_lib.find_shards(write_data(tmp_path, tokenizer, examples, num_shards=4), SEQ,
                              tokenizer)
    seen = []
    for pipeline in range(2):
        ds = input_lib.pretraining_dataset(shards, 4, seed=0, training=False, num_input_pipelines=2,
                                      input_pipeline_id=pipeline)
        seen.append({tuple(t) for b in take(ds, 8) for t in b["token_ids"]})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(map(tuple, examples["token_ids"]))
    with pytest.raises(input_lib.DataError,
                       match=r"4 shard\(s\) in .* cannot feed 5 input pipelines.*--num_shards=5"):
        input_lib.pretraining_dataset(shards, 4, seed=0, num_input_pipelines=5, input_pipeline_id=4)
    # 16 examples per file; 2 pipelines reading their 2 files together (cycle_length 2).
    position = lambda step: input_lib.resume_file_position(shards, step, 8, 2, cycle_length=2)
    assert [position(s) for s in (0, 7, 8, 15, 16)] == [0, 0, 2, 2, 4]


def test_too_few_or_empty_shards_for_the_input_pipelines_are_refused_up_front(
        tmp_path, tokenizer, corpus_examples, write_data):
    # 2 examples round-robin into 4 shards: shards 2 and 3 are empty.
    shards = input_lib.find_shards(write_data(tmp_path, tokenizer, corpus_examples(tokenizer, 2),
                                              num_shards=4), SEQ, tokenizer)
    for pipelines in (1, 2):  # pipeline 1 of 2 reads shards 1 and 3: one holds a record
        input_lib.check_shards_per_pipeline(shards, pipelines)
    with pytest.raises(input_lib.DataError) as too_few:
        input_lib.check_shards_per_pipeline(shards, 8)
    assert f"4 shard(s) in {tmp_path} cannot feed 8 input pipelines" in str(too_few.value)
    assert "pipelines.build_pretraining_data --num_shards=8" in str(too_few.value)
    with pytest.raises(input_lib.DataError) as empty:
        input_lib.check_shards_per_pipeline(shards, 4)
    assert "input pipeline 3 of 4 gets only empty files" in str(empty.value)
    assert str(tmp_path / "train-00003-of-00004.tfrecord") in str(empty.value)
    assert "--num_shards=4" in str(empty.value)


def test_data_on_another_file_system_is_read_through_gfile(tmp_path, tokenizer, corpus_examples,
                                                           write_data):
    """TensorFlow's in-memory ``ram://`` file system stands in for ``gs://``: any local-only
    call (os.path, open, glob) on the way from a data directory to batches fails here."""
    examples = corpus_examples(tokenizer, 32)
    write_data(tmp_path / "local", tokenizer, examples, num_shards=4, compression="GZIP")
    remote = f"ram://{tmp_path.name}/data"
    tf.io.gfile.makedirs(remote)
    for name in tf.io.gfile.listdir(str(tmp_path / "local")):
        tf.io.gfile.copy(str(tmp_path / "local" / name), f"{remote}/{name}")
    try:
        for pattern in (remote, f"{remote}/train-*"):
            shards = input_lib.find_shards(pattern, SEQ, tokenizer, skip_corrupt=True)
            assert shards.files == tuple(f"{remote}/train-{i:05d}-of-00004.tfrecord.gz"
                                         for i in range(4))
            assert (shards.num_examples, shards.compression) == (32, "GZIP")
            input_lib.check_shards_per_pipeline(shards, 4)
            (batch,) = take(input_lib.pretraining_dataset(shards, 32, seed=0, training=False), 1)
            order = np.argsort(np.r_[0:32:4, 1:32:4, 2:32:4, 3:32:4])  # shard by shard
            np.testing.assert_array_equal(batch["token_ids"][order], examples["token_ids"])
        tf.io.gfile.remove(f"{remote}/COMPLETED")
        with pytest.raises(input_lib.DataError, match=f"{remote}: no COMPLETED marker"):
            input_lib.find_shards(remote, SEQ, tokenizer)
    finally:
        tf.io.gfile.rmtree(f"ram://{tmp_path.name}")
