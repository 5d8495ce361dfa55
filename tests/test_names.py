"""One vocabulary of names end to end: TFRecord keys = tf.data keys = model input names."""

import glob

import keras_hub
import tensorflow as tf

from electra_tf.config_io import load_config
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.tokenizer import Tokenizer
from electra_tf.training import input as input_lib
from pipelines.build_pretraining_data import BuildOptions, build_pretraining_data
from pipelines.inputs import InputOptions

NAMES = {"token_ids", "segment_ids", "padding_mask"}


def test_names_from_tfrecords_to_model_inputs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Call me Ishmael.\nSome years ago, never mind how long.\n\n"
                      "It is a truth universally acknowledged.\nA single man in possession.\n")
    config = load_config("debug_tiny")
    build_pretraining_data(BuildOptions(
        output_dir=str(tmp_path / "data"), input=InputOptions(inputs=(str(corpus),)),
        max_seq_length=config.data.seq_length, validation_fraction=0.0, num_shards=1))

    # 1. The TFRecord feature keys written by the Beam pipeline.
    (shard,) = glob.glob(str(tmp_path / "data" / "train-*.tfrecord"))
    record = next(iter(tf.data.TFRecordDataset(shard)))
    example = tf.train.Example.FromString(record.numpy())
    assert set(example.features.feature) == NAMES

    # 2. The tf.data element keys read back by pre-training.
    tokenizer = Tokenizer()
    shards = input_lib.find_shards(str(tmp_path / "data"), config.data.seq_length, tokenizer)
    batch = next(iter(input_lib.pretraining_dataset(shards, batch_size=2, seed=0)))
    assert set(batch) == NAMES | {"example_index"}

    # 3. What the tokenizer produces for fine-tuning and serving.
    assert set(tokenizer.encode(tf.constant(["a"]), seq_length=8)) == NAMES

    # 4. The model's inputs, and keras-hub's backbone uses the same names.
    encoder = ElectraEncoder(config.model)
    out = encoder({k: batch[k] for k in NAMES})
    assert out.shape == (2, config.data.seq_length, config.model.hidden_size)
    backbone = keras_hub.models.ElectraBackbone(
        vocab_size=100, num_layers=1, num_heads=1, hidden_dim=8, embedding_dim=8,
        intermediate_dim=16, max_sequence_length=16)
    assert {t.name.split(":")[0] for t in backbone.inputs} == NAMES
