"""Generate tests/data/checkpoint_fixture/ (a pre-training checkpoint and its next losses).

The fixture pins the checkpoint format: object names (``model/generator/layer_0/query/_kernel``,
``optimizer/<variable path>_m``, ``seed_generators/<state path>``), Keras variable paths and the
numbers a restored run goes on with. The committed fixture was written by the code at commit
cb62a8a, before the modules moved into subpackages (this script then imported them from their
old places); ``tests/test_checkpoint_fixture.py`` restores it into a freshly built model and
checks that the next two steps give the recorded losses. Regenerate it only when the checkpoint
format changes on purpose (old checkpoints then no longer resume).

What it holds (about 350 KB):

* ``vocab.txt``: a 512-token vocabulary (the five special tokens and the 507 most frequent
  WordPiece tokens of the first 400 Moby-Dick lines under the packaged BERT vocabulary, by
  count then token), so the embedding table is 512 rows instead of 30,522;
* ``config.yaml``: the effective config the loop wrote (``debug_tiny`` with one layer, the
  vocabulary above, 4 steps, a checkpoint every 2);
* ``ckpt-2.index``, ``ckpt-2.data-00000-of-00001``: the loop's checkpoint after step 2
  (model, optimizer, seed generators and the data iterator:
  ``electra_tf.training.checkpointing.CHECKPOINT_KEYS``);
* ``next_steps.json``: a batch of 8 examples (the first 8 of the training data, in order,
  with ``example_index`` 0-7) and the ``loss`` of two ``train_step`` calls on it after the
  checkpoint is restored into a fresh ``ElectraPretrainer`` (step 3, then step 4, which also
  depends on the restored Adam moments).

From the repository root::

    python tests/data/make_checkpoint_fixture.py

The training data (64 Moby-Dick line pairs, 2 shards) is written into a temporary directory
and not kept: the fixture needs only the checkpoint, the config and the batch.
"""

import argparse
import collections
import dataclasses
import json
import os
import shutil
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path.insert(0, _ROOT)

import tensorflow as tf  # noqa: E402

from electra_tf import corpus  # noqa: E402
from electra_tf.config_io import load_config, load_saved_config  # noqa: E402
from electra_tf.objective.pretrainer import build_pretrainer  # noqa: E402
from electra_tf.tokenizer import SPECIAL_TOKENS, Tokenizer  # noqa: E402
from electra_tf.training.checkpointing import model_state, optimizer_state  # noqa: E402
from electra_tf.training.distribute import make_strategy  # noqa: E402
from electra_tf.training.loop import run_pretraining  # noqa: E402
from electra_tf.training.optimization import build_optimizer  # noqa: E402

DEFAULT_OUT = os.path.join(_HERE, "checkpoint_fixture")
VOCAB_SIZE = 512
CHECKPOINT = "ckpt-2"
# debug_tiny with one layer (short traces), the small vocabulary and a 4-step schedule.
OVERRIDES = ("model.num_layers=1", f"model.vocab_size={VOCAB_SIZE}", "train.num_steps=4",
             "train.checkpoint_every=2", "train.log_every=1", "data.shuffle_buffer=16")
FEATURES = ("token_ids", "segment_ids", "padding_mask")


def moby_dick_lines(count):
    return [line for doc in corpus.read_documents(corpus.corpus_path("moby_dick"))
            for line in doc][:count]


def write_vocab(path):
    """Special tokens, then the most frequent tokens of the first 400 lines."""
    full = Tokenizer()
    counts = collections.Counter(full.tokenize(tf.constant(moby_dick_lines(400))).flat_values
                                 .numpy().tolist())
    tokens = [full.vocab[i] for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1],
                                                                             full.vocab[kv[0]]))
              if full.vocab[i] not in SPECIAL_TOKENS]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in list(SPECIAL_TOKENS) + tokens[:VOCAB_SIZE - 5]))


def write_data(directory, tokenizer, seq_length, num_examples=64, num_shards=2):
    """Our record format (docs/architecture.md), round-robin into shards; returns the examples."""
    lines = moby_dick_lines(2 * num_examples)
    encoded = {k: v.numpy() for k, v in tokenizer.encode(
        tf.constant(lines[0::2]), tf.constant(lines[1::2]), seq_length).items()}
    for shard in range(num_shards):
        path = os.path.join(directory, f"train-{shard:05d}-of-{num_shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(shard, num_examples, num_shards):
                feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(
                    value=encoded[k][i].tolist())) for k in FEATURES}
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    metadata = {"format": "electra_tf", "seq_length": seq_length, "compression": "",
                "tokenizer": tokenizer.settings(),
                "splits": {"train": {"num_examples": num_examples, "num_shards": num_shards,
                                     "file_pattern": f"train-*-of-{num_shards:05d}.tfrecord"}}}
    with open(os.path.join(directory, "metadata.json"), "w") as f:
        json.dump(metadata, f)
    open(os.path.join(directory, "COMPLETED"), "w").close()
    return encoded


def next_losses(model_dir, vocab_path, batch):
    """Restores ``ckpt-2`` into a fresh pretrainer and runs two steps on ``batch``."""
    tf.config.experimental.enable_op_determinism()  # as the loop (train.deterministic)
    config = load_saved_config(model_dir)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  vocab_path=vocab_path))
    pretrainer = build_pretrainer(config, Tokenizer(vocab_path))
    optimizer = build_optimizer(config.optimizer, config.train.num_steps, pretrainer)
    pretrainer.compile(optimizer=optimizer)
    checkpoint = tf.train.Checkpoint(model=model_state(pretrainer),
                                     optimizer=optimizer_state(optimizer),
                                     seed_generators=pretrainer.seed_generator_variables())
    checkpoint.restore(os.path.join(model_dir, CHECKPOINT)).assert_existing_objects_matched()
    assert int(optimizer.iterations) == 2
    step = tf.function(pretrainer.train_step, autograph=False)
    return [float(step(batch)["loss"]) for _ in range(2)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    vocab_path = os.path.join(args.out, "vocab.txt")
    write_vocab(vocab_path)
    tokenizer = Tokenizer(vocab_path)
    config = load_config("debug_tiny", OVERRIDES + (f"data.vocab_path={vocab_path}",))
    with tempfile.TemporaryDirectory() as scratch:
        data_dir, model_dir = os.path.join(scratch, "data"), os.path.join(scratch, "model")
        os.makedirs(data_dir)
        examples = write_data(data_dir, tokenizer, config.data.seq_length)
        result = run_pretraining(config, data_dir, model_dir, make_strategy("cpu"))
        assert result.completed and result.step == 4, result
        batch = {k: v[:8].tolist() for k, v in examples.items()}
        batch["example_index"] = list(range(8))
        losses = next_losses(model_dir, vocab_path, {k: tf.constant(v, tf.int32)
                                                     for k, v in batch.items()})
        for name in ("config.yaml", f"{CHECKPOINT}.index",
                     f"{CHECKPOINT}.data-00000-of-00001"):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(args.out, name))
    with open(os.path.join(args.out, "next_steps.json"), "w", encoding="ascii") as f:
        f.write("{\n")
        f.write(f'  "checkpoint": "{CHECKPOINT}",\n')
        f.write(f'  "losses": {json.dumps(losses)},\n')
        f.write('  "batch": {\n')
        f.write(",\n".join(f'    "{k}": {json.dumps(v)}' for k, v in batch.items()))
        f.write("\n  }\n}\n")
    size = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {args.out} ({size / 1024:.0f} KiB); losses after restore: {losses}")


if __name__ == "__main__":
    main()
