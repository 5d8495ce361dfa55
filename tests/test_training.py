"""The pre-training loop on debug_tiny (one layer, to keep tracing short): logs, TensorBoard,
checkpoints, exact resume after kill -9 and after SIGTERM, non-finite loss, warm start."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import config_io
from electra_tf.objective.pretrainer import ELECTRA_METRICS
from electra_tf.tokenizer import Tokenizer
from electra_tf.training import checkpointing, distribute, loop, progress
from electra_tf.training.schedules import WarmupPolynomialDecay

# A short schedule: 12 steps, checkpoints every 4, logs every 3.
OVERRIDES = ("model.num_layers=1", "train.num_steps=12", "train.checkpoint_every=4",
             "train.log_every=3", "train.eval_every=6", "train.eval_steps=1")


def tiny_config(*more):
    return config_io.load_config("debug_tiny", OVERRIDES + more)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, corpus_examples, write_data):
    tokenizer = Tokenizer()
    directory = tmp_path_factory.mktemp("data")
    write_data(directory, tokenizer, corpus_examples(tokenizer, 128))
    write_data(directory, tokenizer, corpus_examples(tokenizer, 16, offset=400), num_shards=1,
               split="validation")
    return str(directory)


def read_log(model_dir, split="train"):
    with open(os.path.join(model_dir, progress.METRICS_FILE)) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def scalar_tags(directory):
    tags = {}
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, {})[event.step] = float(
                    tf.make_ndarray(value.tensor))
    return tags


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """An uninterrupted run with evaluation: the reference every resumed run must reproduce."""
    model_dir = str(tmp_path_factory.mktemp("reference"))
    lines = []
    result = loop.run_pretraining(tiny_config(), data_dir, model_dir,
                                      distribute.make_strategy("cpu"), eval_pattern=data_dir,
                                      echo=lines.append)
    return model_dir, result, lines


def test_run_writes_logs_tensorboard_checkpoints_config_and_pretrained(reference):
    model_dir, result, lines = reference
    config = tiny_config()
    assert (result.step, result.completed, result.resumed_from) == (12, True, 0)
    assert result.checkpoint == os.path.join(model_dir, "ckpt-12")

    train = read_log(model_dir)
    assert [r["step"] for r in train] == list(range(1, 13))
    assert all(np.isfinite(r["loss"]) for r in train)
    # Same objective as the paper: total = generator + 50 * discriminator.
    for r in train:
        np.testing.assert_allclose(r["loss"], r["generator_loss"] + 50 * r["discriminator_loss"],
                                   rtol=1e-5)
    assert np.mean([r["loss"] for r in train[-3:]]) < np.mean([r["loss"] for r in train[:3]])
    assert [r["step"] for r in read_log(model_dir, "eval")] == [6, 12]

    # Console: one line per log interval with throughput, ETA, losses, precision/recall.
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split("|")[0].strip() for line in progress] == [
        "step  3/12", "step  6/12", "step  9/12", "step 12/12"]
    for token in ("steps/s", "tok/s", "ETA", "loss", "gen", "disc", " P ", " R "):
        assert token in progress[-1]

    train_tags = scalar_tags(os.path.join(model_dir, "train"))
    expected = set(ELECTRA_METRICS) | {"gradient_norm", "learning_rate",
                                       "throughput/sequences_per_second",
                                       "throughput/tokens_per_second"}
    assert expected <= set(train_tags)
    assert sorted(train_tags["loss"]) == [3, 6, 9, 12]
    np.testing.assert_allclose(  # the mean of the interval's per-step losses
        train_tags["loss"][6], np.mean([r["loss"] for r in train[3:6]]), rtol=1e-6)
    schedule = WarmupPolynomialDecay(config.optimizer.learning_rate, 12,
                                     config.optimizer.warmup_steps)
    np.testing.assert_allclose(train_tags["learning_rate"][6], float(schedule(5)), rtol=1e-6)
    assert set(ELECTRA_METRICS) <= set(scalar_tags(os.path.join(model_dir, "eval")))

    names = [name for name, _ in tf.train.list_variables(result.checkpoint)]
    assert set(checkpointing.CHECKPOINT_KEYS) <= {name.split("/")[0] for name in names}
    for stable in ("model/discriminator/layer_0/", "model/generator/layer_0/",
                   "model/embeddings/word_embeddings/", "model/rtd_head/", "model/mlm_head/",
                   "optimizer/iteration/", "seed_generators/electra_pretrainer.Sdiscriminator"):
        assert any(name.startswith(stable) for name in names), stable
    assert not any("_trainable_variables" in name for name in names)
    assert sorted(f for f in os.listdir(model_dir) if f.endswith(".index")) == [
        "ckpt-12.index", "ckpt-4.index", "ckpt-8.index"]
    assert config_io.load_saved_config(model_dir) == config
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["tokenizer"] == Tokenizer().settings()
    pretrained = os.listdir(os.path.join(model_dir, "pretrained"))
    assert {"discriminator.weights.h5", "generator.weights.h5", "config.yaml"} <= set(pretrained)


def test_restart_after_completion_and_incompatible_config(reference, data_dir):
    model_dir, _, _ = reference
    strategy = distribute.make_strategy("cpu")
    again = loop.run_pretraining(tiny_config(), data_dir, model_dir, strategy,
                                     echo=lambda line: None)
    assert (again.step, again.completed, again.resumed_from) == (12, True, 12)
    assert len(read_log(model_dir)) == 12
    with pytest.raises(checkpointing.TrainingError,
                       match=r"model.hidden_size: 32 -> 64.*use a new --model_dir"):
        loop.run_pretraining(tiny_config("model.hidden_size=64"), data_dir, model_dir,
                                 strategy)


def test_sigterm_saves_a_checkpoint_and_stops(reference, data_dir, tmp_path):
    model_dir = str(tmp_path)

    def echo(line):  # SIGTERM arrives while step 4 runs
        if line.startswith("step  3/"):
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = loop.run_pretraining(tiny_config(), data_dir, model_dir,
                                       distribute.make_strategy("cpu"), echo=echo)
    assert (stopped.step, stopped.completed) == (4, False)
    assert stopped.checkpoint == os.path.join(model_dir, "ckpt-4")
    assert tf.train.latest_checkpoint(model_dir) == stopped.checkpoint
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    assert read_log(model_dir) == read_log(reference[0])[:4]


def test_sigterm_during_evaluation_stops_at_once_with_a_checkpoint(data_dir, tmp_path):
    """An evaluation far longer than a preemption's grace period is cut short, not finished."""
    model_dir = str(tmp_path)
    config = tiny_config("train.log_every=2", "train.eval_every=2", "train.eval_steps=1000",
                         "train.num_steps=2")

    def echo(line):  # SIGTERM arrives just before the evaluation at step 2 starts
        if line.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = loop.run_pretraining(config, data_dir, model_dir,
                                       distribute.make_strategy("cpu"), eval_pattern=data_dir,
                                       echo=echo)
    assert (stopped.step, stopped.completed, stopped.eval_metrics) == (2, False, {})
    assert tf.train.latest_checkpoint(model_dir) == stopped.checkpoint == f"{model_dir}/ckpt-2"
    assert [r["step"] for r in read_log(model_dir)] == [1, 2]
    assert read_log(model_dir, "eval") == []  # a cut-short evaluation is not logged
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # It was the last step's evaluation: the rerun does it (once) before finishing.
    config = tiny_config("train.log_every=2", "train.eval_every=2", "train.eval_steps=1",
                         "train.num_steps=2")
    for _ in range(2):
        done = loop.run_pretraining(config, data_dir, model_dir, distribute.make_strategy("cpu"),
                                    eval_pattern=data_dir, echo=lambda line: None)
        assert (done.step, done.completed, done.resumed_from) == (2, True, 2)
        assert [r["step"] for r in read_log(model_dir, "eval")] == [2]
    assert done.eval_metrics == {}  # the second rerun found it logged and did not redo it


def test_kill_9_and_restart_reproduces_every_loss(reference, data_dir, tmp_path):
    """The CLI killed right after a checkpoint, restarted: bit-identical per-step metrics."""
    model_dir = str(tmp_path)
    command = [sys.executable, "-m", "electra_tf.pretrain", "--config", "debug_tiny",
               "--data", data_dir, "--model_dir", model_dir, "--strategy", "cpu"]
    for item in OVERRIDES:
        command += ["--set", item]
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    while not tf.train.latest_checkpoint(model_dir):  # ckpt-4 written (or ckpt-8 by now)
        assert killed.poll() is None and time.time() < deadline, "no checkpoint written"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    interrupted_at = tf.train.latest_checkpoint(model_dir)
    assert interrupted_at in (f"{model_dir}/ckpt-4", f"{model_dir}/ckpt-8")

    restarted = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"resumed from {interrupted_at} at step" in restarted.stdout
    assert read_log(model_dir) == read_log(reference[0])


def test_warm_start_then_non_finite_loss_stops_at_the_last_good_checkpoint(
        reference, data_dir, tmp_path):
    """``init_from`` takes the weights (not the optimizer); a blow-up stops the run."""
    # Step 1 runs at learning rate 0 (warmup starts at 0), so ckpt-1 holds the source's
    # weights; step 2 multiplies the updates by 1e30, so the loss of step 3 is not finite.
    config = tiny_config("optimizer.learning_rate=1.0e+30", "optimizer.warmup_steps=1",
                         "train.checkpoint_every=1")
    model_dir = str(tmp_path)
    with pytest.raises(checkpointing.TrainingError, match="non-finite loss at step 3") as e:
        loop.run_pretraining(config, data_dir, model_dir, distribute.make_strategy("cpu"),
                                 init_from=reference[0], echo=lambda line: None)
    last_good = os.path.join(model_dir, "ckpt-2")
    assert f"the last good checkpoint is {last_good}" in str(e.value)
    assert tf.train.latest_checkpoint(model_dir) == last_good
    assert [r["step"] for r in read_log(model_dir)] == [1, 2]

    warm, source = (tf.train.load_checkpoint(p)
                    for p in (os.path.join(model_dir, "ckpt-1"), reference[1].checkpoint))
    weights = [n for n, _ in tf.train.list_variables(reference[1].checkpoint)
               if n.startswith("model/")]
    assert len(weights) > 40
    for name in weights:
        np.testing.assert_array_equal(warm.get_tensor(name), source.get_tensor(name))
    assert warm.get_tensor("optimizer/iteration/.ATTRIBUTES/VARIABLE_VALUE") == 1
