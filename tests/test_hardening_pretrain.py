"""Bad input to pre-training: an empty split, google-research/electra records without metadata,
a vocabulary of another size than ``model.vocab_size``, an unusable ``--model_dir`` or
``--init_from``. Each is a one-line error (or a warning) before anything is written into
``--model_dir``, never a hang or a traceback."""

import gzip
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import corpus, pretrain
from electra_tf.models.pretrained import load_pretrained
from electra_tf.tokenizer import Tokenizer, default_vocab_path
from electra_tf.training import input as input_lib
from electra_tf.training import records
from pipelines.build_pretraining_data import BuildOptions, build_pretraining_data
from pipelines.inputs import InputOptions

SEQ = 32  # debug_tiny's data.seq_length
VOCAB_SIZE = 485  # the vocabulary: not the default model.vocab_size (30522)
CLS, SEP = 101, 102  # in the first 485 lines of the BERT vocabulary, as [PAD] 0, [MASK] 103
TINY = ["--config", "debug_tiny", "--set", "model.num_layers=1", "--set", "train.num_steps=2"]


def create_int_feature(values):  # the reference's helper
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def write_reference_records(directory, num_examples, num_files, seq_length=SEQ, seed=0):
    """Writes records as google-research/electra's build_pretraining_dataset.py does.

    ``ExampleWriter`` opens ``pretrain_data.tfrecord-<i>-of-<n>`` (uncompressed) and writes
    examples round-robin; ``ExampleBuilder._make_tf_example`` makes ``input_ids``
    (``[CLS] A [SEP] (B [SEP])`` padded with 0), ``input_mask`` and ``segment_ids``, each an
    int64 list of ``max_seq_length`` values (``create_int_feature``). No metadata, no marker.
    Returns the examples under our names, in writing order.
    """
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    writers = [tf.io.TFRecordWriter(os.path.join(directory,
                                                 f"pretrain_data.tfrecord-{i}-of-{num_files}"))
               for i in range(num_files)]
    written = {k: [] for k in records.FEATURES}
    for n in range(num_examples):
        first = rng.integers(104, VOCAB_SIZE, rng.integers(3, 12)).tolist()
        second = rng.integers(104, VOCAB_SIZE, rng.integers(0, 12)).tolist()
        input_ids = [CLS] + first + [SEP]
        segment_ids = [0] * len(input_ids)
        if second:
            input_ids += second + [SEP]
            segment_ids += [1] * (len(second) + 1)
        input_mask = [1] * len(input_ids)
        input_ids += [0] * (seq_length - len(input_ids))
        input_mask += [0] * (seq_length - len(input_mask))
        segment_ids += [0] * (seq_length - len(segment_ids))
        example = tf.train.Example(features=tf.train.Features(feature={
            "input_ids": create_int_feature(input_ids),
            "input_mask": create_int_feature(input_mask),
            "segment_ids": create_int_feature(segment_ids)}))
        writers[n % num_files].write(example.SerializeToString())
        for k, v in (("token_ids", input_ids), ("segment_ids", segment_ids),
                     ("padding_mask", input_mask)):
            written[k].append(v)
    for writer in writers:
        writer.close()
    return {k: np.array(v) for k, v in written.items()}


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A 485-line vocabulary: the head of the BERT one ([PAD], [unused*], [UNK] … [MASK])."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    with open(default_vocab_path()) as f:
        path.write_text("".join(f.readlines()[:VOCAB_SIZE]))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, vocab):
    """Two CLI steps on reference-script records, with only ``data.vocab_path`` set."""
    records = tmp_path_factory.mktemp("reference_records")
    write_reference_records(records, num_examples=24, num_files=2)
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    args = TINY + ["--data", str(records / "pretrain_data.tfrecord-*"), "--set",
                   f"data.vocab_path={vocab}"]
    assert pretrain.main(args + ["--model_dir", model_dir]) == 0
    return records, model_dir, args


def error_line(capsys):
    """The CLI's stderr: exactly one line, ``error: …``."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


def test_empty_validation_split_is_warned_about_and_refused_before_training(
        tmp_path, caplog, capsys):
    text = gzip.open(corpus.corpus_path("austen")).read()
    (tmp_path / "small.txt").write_bytes(b"\n\n".join(text.split(b"\n\n")[:3]) + b"\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="pipelines.build_pretraining_data"):
        metadata = build_pretraining_data(BuildOptions(
            output_dir=str(out), input=InputOptions(inputs=(str(tmp_path / "small.txt"),)),
            max_seq_length=SEQ, validation_fraction=0.01))
    assert metadata["splits"]["validation"]["num_examples"] == 0
    assert metadata["splits"]["train"]["num_examples"] > 0
    assert (f"the validation split of {out} is empty (1 shard(s), 0 examples): too little "
            "text for --validation_fraction=0.01") in caplog.text

    model_dir = tmp_path / "model"
    code = pretrain.main(TINY + ["--data", str(out), "--eval_data", str(out),
                                 "--model_dir", str(model_dir)])
    assert code == 1
    assert error_line(capsys) == (
        f"error: the 'validation' split of {out} holds no record (1 empty file(s): "
        f"{out}/validation-00000-of-00001.tfrecord); build the data from more text (a small "
        "corpus can leave a split empty)")
    assert not model_dir.exists()


def test_empty_files_are_refused_not_repeated_forever(tmp_path):
    tokenizer = Tokenizer()
    write_reference_records(tmp_path / "none", num_examples=0, num_files=2)
    with pytest.raises(input_lib.DataError, match=r"none: its 2 file\(s\) hold no record"):
        input_lib.find_shards(str(tmp_path / "none"), SEQ, tokenizer)
    # One record: shard 0 has it, shard 1 is empty (as the reference's later files often are).
    write_reference_records(tmp_path / "one", num_examples=1, num_files=2)
    shards = input_lib.find_shards(str(tmp_path / "one"), SEQ, tokenizer)
    batch = next(iter(input_lib.pretraining_dataset(shards, 4, seed=0, training=False)))
    assert (batch["token_ids"].numpy() == batch["token_ids"].numpy()[0]).all()  # repeated
    with pytest.raises(input_lib.DataError,
                       match=r"pipeline 1 of 2 gets only empty files \(.*-1-of"):
        input_lib.pretraining_dataset(shards, 4, seed=0, num_input_pipelines=2, input_pipeline_id=1)


def test_reference_script_records_are_read_without_metadata(tmp_path, caplog):
    tokenizer = Tokenizer()
    examples = write_reference_records(tmp_path / "ref", num_examples=12, num_files=3)
    with caplog.at_level(logging.WARNING, logger="electra_tf.training.input"):
        by_dir = input_lib.find_shards(str(tmp_path / "ref"), SEQ, tokenizer)
    assert "the tokenizer cannot be verified" in caplog.text
    by_glob = input_lib.find_shards(str(tmp_path / "ref" / "pretrain_data.tfrecord-*"), SEQ,
                               tokenizer)
    assert by_dir == by_glob
    assert (by_dir.format, by_dir.compression, by_dir.seq_length) == ("original", "", SEQ)
    (batch,) = input_lib.pretraining_dataset(by_dir, 12, seed=0, training=False).take(1)
    order = np.r_[0:12:3, 1:12:3, 2:12:3]  # file order: round-robin writing
    for k in records.FEATURES:
        np.testing.assert_array_equal(batch[k].numpy(), examples[k][order])
    # Such a directory has no validation split: evaluating on it would score training data.
    with pytest.raises(input_lib.DataError, match=r"ref has no metadata.json, so no "
                                                  r"'validation' split; give the validation"):
        input_lib.find_shards(str(tmp_path / "ref"), SEQ, tokenizer, "validation")

    with pytest.raises(input_lib.DataError, match=(
            r"pretrain_data.tfrecord-0-of-3: records hold 32 tokens \(input_ids\), config "
            r"data.seq_length=64; pass --set data.seq_length=32")):
        input_lib.find_shards(str(tmp_path / "ref"), 64, tokenizer)
    small = tmp_path / "v.txt"
    small.write_text("".join(open(default_vocab_path()).readlines()[:300]))
    with pytest.raises(input_lib.DataError,
                       match=r"holds token id \d+, but the vocabulary .*v.txt has 300 tokens"):
        input_lib.find_shards(str(tmp_path / "ref"), SEQ, Tokenizer(str(small)))
    with tf.io.TFRecordWriter(str(tmp_path / "other.tfrecord")) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}))
            .SerializeToString())
    with pytest.raises(input_lib.DataError,
                       match=r"other.tfrecord: records with features \['text'\]"):
        input_lib.find_shards(str(tmp_path / "other.tfrecord"), SEQ, tokenizer)
    # Shards named like our pipeline's, without its markers: an unfinished run, not foreign.
    os.makedirs(tmp_path / "ours")
    shutil.copy(tmp_path / "ref" / "pretrain_data.tfrecord-0-of-3",
                tmp_path / "ours" / "train-00000-of-00001.tfrecord")
    with pytest.raises(input_lib.DataError, match="ours: no COMPLETED marker"):
        input_lib.find_shards(str(tmp_path / "ours"), SEQ, tokenizer)


def test_reference_records_train_with_the_vocabulary_size_of_the_vocabulary(
        trained, vocab, capsys):
    records, model_dir, args = trained
    config, tokenizer, encoder = load_pretrained(model_dir)  # what fine-tuning starts from
    assert config.model.vocab_size == tokenizer.vocab_size == VOCAB_SIZE
    embeddings = [v for v in encoder.weights if "word_embeddings" in v.path]
    assert [tuple(v.shape) for v in embeddings] == [(VOCAB_SIZE, config.model.embedding_size)]
    with open(os.path.join(model_dir, "config.yaml")) as f:
        assert f"vocab_size: {VOCAB_SIZE}\n" in f.read()
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    # An untrained generator is near uniform over the embedding table's rows: ln 485 ≈ 6.18,
    # where the 30522-row default gave ln 30522 ≈ 10.33.
    assert abs(first["generator_loss"] - np.log(VOCAB_SIZE)) < 0.5

    # Resuming derives the same value, so the saved config still matches.
    assert pretrain.main(args + ["--model_dir", model_dir]) == 0
    assert f"resumed from {model_dir}/ckpt-2 at step 2" in capsys.readouterr().out

    # A value the user gives is kept, and refused when the vocabulary disagrees.
    fresh = os.path.join(os.path.dirname(model_dir), "fresh")
    assert pretrain.main(TINY + ["--data", str(records), "--model_dir", fresh, "--set",
                                 f"data.vocab_path={vocab}", "--set",
                                 "model.vocab_size=30522"]) == 1
    assert error_line(capsys) == (
        f"error: model.vocab_size=30522, but the vocabulary {vocab} has {VOCAB_SIZE} tokens; "
        f"set model.vocab_size={VOCAB_SIZE} (python -m electra_tf.pretrain takes it from the "
        "vocabulary when it is not set)")
    assert not os.path.exists(fresh)


def test_bad_model_dir_and_init_from_are_one_line_errors_that_write_nothing(
        trained, tmp_path, capsys):
    _, model_dir, args = trained
    run = lambda *more: pretrain.main(args + list(more))  # noqa: E731
    (tmp_path / "file").write_text("x")
    assert run("--model_dir", str(tmp_path / "file" / "run")) == 1
    assert error_line(capsys) == (f"error: --model_dir {tmp_path}/file/run: cannot write "
                                  f"there ({tmp_path}/file is not a directory)")

    assert run("--model_dir", str(tmp_path / "new"), "--init_from",
               str(tmp_path / "missing")) == 1
    assert error_line(capsys).startswith(f"error: --init_from {tmp_path}/missing: no checkpoint")
    assert not (tmp_path / "new").exists()

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    os.remove(copy / "config.yaml")
    assert run("--model_dir", str(copy)) == 1
    assert error_line(capsys) == (
        f"error: --model_dir {copy} has checkpoints ({copy}/ckpt-2) but no config.yaml, so "
        "nothing says which model they hold; put its config.yaml back or use a new --model_dir")
    assert not (copy / "config.yaml").exists()
