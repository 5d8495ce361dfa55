"""The pre-training loop on debug_tiny (one layer, to keep tracing short): logs, TensorBoard,
checkpoints, exact resume after kill -9 and after SIGTERM, non-finite loss, warm start, several
steps per call (train.steps_per_loop), the op-determinism error."""

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
from electra_tf.objective.pretrainer import ELECTRA_METRICS, build_pretrainer
from electra_tf.tokenizer import Tokenizer
from electra_tf.training import checkpointing, distribute, loop, progress, steps
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


def test_warm_start_with_the_optimizer_continues_its_step_and_moments(reference, data_dir,
                                                                       tmp_path):
    """``init_optimizer``: step, Adam moments and weights from the source; data from its start."""
    source = os.path.join(reference[0], "ckpt-8")
    lines = []
    result = loop.run_pretraining(tiny_config(), data_dir, str(tmp_path / "warm"),
                                  distribute.make_strategy("cpu"), init_from=source,
                                  init_optimizer=True, echo=lines.append)
    assert (result.step, result.resumed_from) == (12, 8)
    assert any("initialized the model and optimizer" in line and "step 8" in line
               for line in lines)
    assert [r["step"] for r in read_log(str(tmp_path / "warm"))] == [9, 10, 11, 12]
    # Weights and moments continue from the source: the first update is the source run's
    # update of step 9 only where the batch is the same; the step and schedule certainly are.
    warm = tf.train.load_checkpoint(str(tmp_path / "warm" / "ckpt-12"))
    assert warm.get_tensor("optimizer/iteration/.ATTRIBUTES/VARIABLE_VALUE") == 12

    with pytest.raises(checkpointing.TrainingError, match="holds no optimizer state"):
        loop.run_pretraining(tiny_config(), data_dir, str(tmp_path / "none"),
                             distribute.make_strategy("cpu"),
                             init_from=_model_only_checkpoint(source, tmp_path),
                             init_optimizer=True, echo=lambda line: None)
    with pytest.raises(checkpointing.TrainingError, match="the schedule has ended"):
        loop.run_pretraining(tiny_config("train.num_steps=8"), data_dir, str(tmp_path / "end"),
                             distribute.make_strategy("cpu"), init_from=source,
                             init_optimizer=True, echo=lambda line: None)


def _model_only_checkpoint(source, tmp_path):
    """The ``model/`` part of ``source``, written as ``--init_from`` checkpoints without an
    optimizer are (``checkpointing.model_state`` of a debug_tiny pretrainer)."""
    model = checkpointing.model_state(build_pretrainer(tiny_config(), Tokenizer()))
    tf.train.Checkpoint(model=model).restore(source).expect_partial() \
        .assert_existing_objects_matched()
    return tf.train.Checkpoint(model=model).write(str(tmp_path / "model_only" / "ckpt"))


def test_calls_end_at_the_next_log_checkpoint_evaluation_or_last_step():
    every = (3, 4)  # log, checkpoint
    assert [steps.steps_in_call(s, 4, 12, every) for s in (0, 3, 4, 6, 8, 9)] == [3, 1, 2, 2, 1, 3]
    assert steps.steps_in_call(9, 100, 11, every) == 2  # the last step ends a call
    assert steps.steps_in_call(5, 1, 12, every) == 1
    assert steps.steps_in_call(0, 4, 12, (3, 4, 2)) == 2  # an evaluation every 2 steps


def test_steps_per_loop_logs_the_same_metrics_as_one_step_per_call(reference, data_dir, tmp_path):
    """Four steps per call: every step logged, the same float32 values, the same console."""
    lines = []
    result = loop.run_pretraining(tiny_config("train.steps_per_loop=4"), data_dir, str(tmp_path),
                                  distribute.make_strategy("cpu"), eval_pattern=data_dir,
                                  echo=lines.append)
    model_dir, expected, expected_lines = reference
    assert (result.step, result.completed, result.checkpoint) == (
        12, True, os.path.join(tmp_path, "ckpt-12"))
    with open(os.path.join(tmp_path, progress.METRICS_FILE)) as f, \
            open(os.path.join(model_dir, progress.METRICS_FILE)) as g:
        assert f.read() == g.read()  # train and eval records, byte for byte
    without_timing = lambda line: line.split(" | ", 3)[-1]  # drop steps/s and the ETA
    assert [without_timing(line) for line in lines] == [without_timing(line)
                                                        for line in expected_lines]
    assert result.train_metrics["loss"] == expected.train_metrics["loss"]


def test_a_stop_request_ends_a_multi_step_call_after_its_first_step(data_dir, tmp_path):
    """SIGTERM is seen at the call boundary; the call it is passed into runs one step."""
    config = tiny_config("train.steps_per_loop=4", "train.log_every=2",
                         "train.checkpoint_every=8")

    def echo(line):  # after the call that ends at step 2, before one that would run 3 and 4
        if line.startswith("step  2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = loop.run_pretraining(config, data_dir, str(tmp_path),
                                   distribute.make_strategy("cpu"), echo=echo)
    assert (stopped.step, stopped.completed) == (3, False)
    assert tf.train.latest_checkpoint(str(tmp_path)) == stopped.checkpoint == f"{tmp_path}/ckpt-3"
    assert [r["step"] for r in read_log(str(tmp_path))] == [1, 2, 3]


MIRRORED_RUN = """
import sys
from electra_tf import config_io
from electra_tf.training import distribute, loop
distribute.split_cpu(2)  # before TensorFlow initializes its devices
config = config_io.load_config("debug_tiny", {overrides!r})
loop.run_pretraining(config, {data_dir!r}, sys.argv[1], distribute.make_strategy("mirrored"))
"""


@pytest.mark.parametrize("strategy", ["cpu", "mirrored"])
def test_kill_9_and_restart_reproduces_every_loss(strategy, reference, data_dir, tmp_path):
    """The CLI (cpu) or a mirrored run, three steps per call, killed right after a checkpoint,
    restarted: bit-identical per-step metrics to an uninterrupted run (on cpu: the
    one-step-per-call reference itself, so one and three steps per call agree too)."""
    overrides = OVERRIDES + ("train.steps_per_loop=3",)
    if strategy == "cpu":  # the CLI; the model_dir goes last
        command = [sys.executable, "-m", "electra_tf.pretrain", "--config", "debug_tiny",
                   "--data", data_dir, "--strategy", "cpu"]
        for item in overrides:
            command += ["--set", item]
        command.append("--model_dir")
        uninterrupted = None
    else:  # two replicas on two logical CPUs; the reference runs alongside
        command = [sys.executable, "-c",
                   MIRRORED_RUN.format(overrides=overrides, data_dir=data_dir)]
        uninterrupted = subprocess.Popen(command + [str(tmp_path / "uninterrupted")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
    model_dir = str(tmp_path / "run")
    killed = subprocess.Popen(command + [model_dir], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not tf.train.latest_checkpoint(model_dir):
        assert killed.poll() is None and time.time() < deadline, "no checkpoint written"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    interrupted_at = tf.train.latest_checkpoint(model_dir)
    assert interrupted_at in (f"{model_dir}/ckpt-4", f"{model_dir}/ckpt-8")

    restarted = subprocess.run(command + [model_dir], capture_output=True, text=True,
                               timeout=400)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"resumed from {interrupted_at} at step" in restarted.stdout
    if uninterrupted is None:
        expected = read_log(reference[0])
    else:
        assert uninterrupted.wait(timeout=400) == 0, uninterrupted.stderr.read()[-3000:]
        expected = read_log(str(tmp_path / "uninterrupted"))
    assert [r["step"] for r in expected] == list(range(1, 13))
    assert read_log(model_dir) == expected


# How TensorFlow 2.20 reports a kernel error in a tf.function call (seen for a seedless random op
# under op determinism on CPU), with the GPU kernel's text for an unsorted segment sum.
DETERMINISM_ERROR = """Graph execution error:

Detected at node gradient_tape/UnsortedSegmentSum defined at (most recent call last):
  File "/home/me/determinism/train.py", line 7, in <module>

Deterministic GPU implementation of unsorted segment reduction op not available.
\t [[{{node gradient_tape/UnsortedSegmentSum}}]] [Op:__inference_train_loop_8]"""


def test_an_op_without_a_deterministic_kernel_is_named_in_one_line(data_dir, tmp_path,
                                                                   monkeypatch):
    error = tf.errors.UnimplementedError(None, None, DETERMINISM_ERROR)
    message = steps.determinism_error_message(error)
    assert message.startswith(
        "op gradient_tape/UnsortedSegmentSum has no deterministic implementation on this device "
        "(Deterministic GPU implementation of unsorted segment reduction op not available.)")
    assert "--set train.deterministic=false" in message and "resume" in message
    assert "\n" not in message
    other = tf.errors.UnimplementedError(None, None, "Unimplemented: a complex64 matmul")
    assert steps.determinism_error_message(other) is None
    assert steps.determinism_error_message(
        tf.errors.InvalidArgumentError(None, None, DETERMINISM_ERROR)) is None

    # Through the loop: the first call fails as on a GPU; nothing is checkpointed or logged.
    build = steps.build_step_functions

    def failing_step_functions(*args):
        def train_loop(iterator, num_steps, stop):
            raise error
        return train_loop, build(*args)[1]

    monkeypatch.setattr(steps, "build_step_functions", failing_step_functions)
    with pytest.raises(checkpointing.TrainingError) as e:
        loop.run_pretraining(tiny_config(), data_dir, str(tmp_path),
                             distribute.make_strategy("cpu"), echo=lambda line: None)
    assert str(e.value) == message
    assert tf.train.latest_checkpoint(str(tmp_path)) is None
    assert read_log(str(tmp_path)) == []
