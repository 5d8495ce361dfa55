"""What several test files share: the packaged tokenizer, pre-training records written as the
Beam pipeline writes them, the JSON round trip of a layer's config, and a script run in a fresh
process (for logical CPU devices, which must exist before TensorFlow starts).

Test files never import each other: a helper two of them need lives here, as a fixture (a
plain function is handed out by a fixture of the same name).
"""

import json
import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from electra_tf import corpus
from electra_tf.tokenizer import Tokenizer
from electra_tf.training.records import FEATURES, ORIGINAL_FEATURES

SEQ = 32  # debug_tiny's data.seq_length


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged BERT uncased tokenizer."""
    return Tokenizer()


def _corpus_examples(tokenizer, count, seq_length=SEQ, offset=0):
    """``count`` examples ``[CLS] line [SEP] next line [SEP]`` from the embedded corpus."""
    lines = [line for doc in corpus.read_documents(corpus.corpus_path("moby_dick"))
             for line in doc][offset:offset + 2 * count]
    encoded = tokenizer.encode(tf.constant(lines[0::2]), tf.constant(lines[1::2]), seq_length)
    return {k: v.numpy() for k, v in encoded.items()}


def _write_data(directory, tokenizer, examples, num_shards=4, fmt="electra_tf", compression="",
                split="train", completed=True, metadata_changes=None):
    """Writes ``examples`` round-robin into ``num_shards`` shards + metadata.json + COMPLETED.

    A second split written into the same directory is added to the metadata's ``splits``.
    """
    os.makedirs(directory, exist_ok=True)
    keys = ORIGINAL_FEATURES if fmt == "original" else {k: k for k in FEATURES}
    suffix = ".tfrecord" + (".gz" if compression else "")
    count = len(examples["token_ids"])
    for shard in range(num_shards):
        path = os.path.join(directory, f"{split}-{shard:05d}-of-{num_shards:05d}{suffix}")
        with tf.io.TFRecordWriter(path, options=compression or None) as writer:
            for i in range(shard, count, num_shards):
                feature = {keys[k]: tf.train.Feature(int64_list=tf.train.Int64List(
                    value=examples[k][i].tolist())) for k in FEATURES}
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    metadata = {
        "format": fmt, "seq_length": examples["token_ids"].shape[1], "compression": compression,
        "tokenizer": tokenizer.settings(),
        "splits": {split: {"num_examples": count, "num_shards": num_shards,
                           "file_pattern": f"{split}-*-of-{num_shards:05d}{suffix}"}},
    }
    metadata.update(metadata_changes or {})
    metadata_path = os.path.join(directory, "metadata.json")
    if os.path.exists(metadata_path):
        with open(metadata_path) as f:
            metadata["splits"].update(json.load(f)["splits"])
    with open(metadata_path, "w") as f:
        json.dump(metadata, f)
    if completed:
        open(os.path.join(directory, "COMPLETED"), "w").close()
    return os.path.join(directory, f"{split}-*")


def _assert_config_round_trip(obj: keras.layers.Layer) -> keras.layers.Layer:
    """Serializes ``obj`` to JSON text, rebuilds it, and checks the rebuilt config is equal.

    Returns:
      The rebuilt object (same class, not built), for further checks.
    """
    # Compared as JSON: tuples in build configs legitimately come back as lists.
    config = json.loads(json.dumps(obj.get_config()))
    text = json.dumps(keras.saving.serialize_keras_object(obj))
    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(clone) is type(obj), f"{type(obj).__name__} came back as {type(clone).__name__}"
    clone_config = json.loads(json.dumps(clone.get_config()))
    assert clone_config == config, (
        f"{type(obj).__name__} config changed in the JSON round trip:\n{config}\n{clone_config}")
    return clone


@pytest.fixture(scope="session")
def corpus_examples():
    """``corpus_examples(tokenizer, count, seq_length=32, offset=0)``: encoded Moby-Dick pairs,
    ``{token_ids, segment_ids, padding_mask}`` int32 numpy [count, seq_length]."""
    return _corpus_examples


@pytest.fixture(scope="session")
def write_data():
    """``write_data(directory, tokenizer, examples, num_shards=4, fmt="electra_tf",
    compression="", split="train", completed=True, metadata_changes=None)``: a pre-training
    data directory (docs/architecture.md); returns the split's shard glob."""
    return _write_data


@pytest.fixture(scope="session")
def assert_config_round_trip():
    """``assert_config_round_trip(layer)``: every electra_tf layer and model survives
    ``get_config`` → JSON → ``from_config``; returns the rebuilt object."""
    return _assert_config_round_trip


def _script_results(script: str) -> dict:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, os.path.join(repo, "tests")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULTS", 1)[1])


@pytest.fixture(scope="session")
def script_results():
    """``script_results(script)``: runs ``python -c script TESTS_DIR`` in a fresh process from
    the repository root (CPU only) and returns the JSON it printed after ``RESULTS``."""
    return _script_results
