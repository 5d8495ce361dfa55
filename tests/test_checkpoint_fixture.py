"""A pre-training checkpoint written by earlier code still restores and goes on identically.

``tests/data/checkpoint_fixture`` (``tests/data/make_checkpoint_fixture.py``) holds the loop's
``ckpt-2`` of a one-layer debug_tiny run on a 512-token vocabulary. Restored into a freshly built
model, every object must find its value (checkpoint names come from attribute names, Keras
variable paths and optimizer slot names, none of which may change), and the next two steps on
the recorded batch must give the recorded losses: step 3 checks weights, step counter and
dropout streams, step 4 also the Adam moments.
"""

import dataclasses
import json
import os

import pytest
import tensorflow as tf

from electra_tf.config_io import load_saved_config
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.tokenizer import Tokenizer
from electra_tf.training import checkpointing
from electra_tf.training.optimization import build_optimizer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checkpoint_fixture")


def variables(prefix):
    return dict(tf.train.list_variables(prefix))


def test_checkpoint_of_earlier_code_restores_and_continues_identically(tmp_path):
    with open(os.path.join(FIXTURE, "next_steps.json")) as f:
        recorded = json.load(f)
    vocab_path = os.path.join(FIXTURE, "vocab.txt")
    config = load_saved_config(FIXTURE)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  vocab_path=vocab_path))
    tf.config.experimental.enable_op_determinism()  # as the loop (train.deterministic)
    pretrainer = build_pretrainer(config, Tokenizer(vocab_path))
    optimizer = build_optimizer(config.optimizer, config.train.num_steps, pretrainer)
    pretrainer.compile(optimizer=optimizer)
    seed_generators = pretrainer.seed_generator_variables()
    checkpoint = tf.train.Checkpoint(model=checkpointing.model_state(pretrainer),
                                     optimizer=checkpointing.optimizer_state(optimizer),
                                     seed_generators=seed_generators)
    checkpoint.restore(os.path.join(FIXTURE, recorded["checkpoint"])) \
        .expect_partial().assert_existing_objects_matched()  # all but the data iterator

    assert int(optimizer.iterations) == 2
    # Every dropout stream has advanced (two steps; the shared embeddings' one runs twice).
    calls = {path.split("/")[1]: int(v.numpy()[1]) for path, v in seed_generators.items()}
    assert calls == {"embeddings": 4, "generator": 2, "discriminator": 2}
    # Today's code saves exactly the names and shapes that the fixture holds (no new objects).
    saved = variables(checkpoint.save(str(tmp_path / "ckpt")))
    fixture = variables(os.path.join(FIXTURE, recorded["checkpoint"]))
    assert "model/generator/layer_0/query/_kernel/.ATTRIBUTES/VARIABLE_VALUE" in fixture
    del fixture["iterator/.ATTRIBUTES/ITERATOR_STATE"]  # the loop's; not restored here
    assert saved == fixture

    batch = {k: tf.constant(v, tf.int32) for k, v in recorded["batch"].items()}
    step = tf.function(pretrainer.train_step, autograph=False)
    losses = [float(step(batch)["loss"]) for _ in range(2)]
    # Bit-identical on the machine that wrote the fixture; the tolerance is for other CPUs.
    assert losses == pytest.approx(recorded["losses"], rel=1e-5)
