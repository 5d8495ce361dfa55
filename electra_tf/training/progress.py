"""What a pre-training run reports: ``metrics.jsonl``, TensorBoard scalars, the console line.

Written to ``model_dir`` (by the chief only under ``multi_worker``):

* ``metrics.jsonl`` — one JSON record per training step (``{"split": "train", "step": k,
  "loss": …}``) and per evaluation (``"split": "eval"``);
* ``train/`` and ``eval/`` — TensorBoard event files.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import keras
import tensorflow as tf

from electra_tf.training.monitoring import HealthMonitor

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``metrics.jsonl``: one record per step; on resume, records after the checkpoint go.

    A killed run may have logged steps past its last checkpoint; the resumed run computes them
    again, so the file always holds exactly one record per step and split. A context manager
    that closes the file.

    Args:
      path: the file (``model_dir/metrics.jsonl``).
      resumed_from: the step of the checkpoint this run starts from (0: a fresh run).
      enabled: False writes nothing (workers other than the chief).
    """

    def __init__(self, path: str, resumed_from: int, enabled: bool):
        self.file = None
        self.eval_steps = set()  # evaluations kept from before the checkpoint (chief only)
        if not enabled:
            return
        kept = []
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by kill -9
                        continue
                    if record["step"] <= resumed_from:
                        kept.append(line if line.endswith("\n") else line + "\n")
                        if record["split"] == "eval":
                            self.eval_steps.add(record["step"])
        self.file = tf.io.gfile.GFile(path, "w")
        self.file.write("".join(kept))
        self.file.flush()

    def write(self, split: str, step: int, metrics: dict) -> None:
        if self.file:
            self.file.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
            self.file.flush()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.file:
            self.file.close()


class Progress:
    """Console line and TensorBoard scalars every ``log_every`` steps; a context manager that
    closes the event files.

    Args:
      log_dir: where ``train/`` and ``eval/`` event files go; None writes none (workers other
        than the chief).
      num_steps: the run's last step (``train.num_steps``): always logged; sets the ETA.
      log_every: steps per console line and TensorBoard point.
      batch_size: sequences per step (the global batch).
      seq_length: tokens per sequence (padding included).
      learning_rate: the rate of the update that made step ``k + 1``, given ``k``
        (:func:`learning_rate_at`).
      health: checks the logged means and returns warning lines.
      evaluates: whether evaluations are written (``eval/``).
      echo: receives the console lines.
    """

    def __init__(self, log_dir: Optional[str], num_steps: int, log_every: int, batch_size: int,
                 seq_length: int, learning_rate: Callable[[int], float], health: HealthMonitor,
                 evaluates: bool, echo: Callable[[str], None]):
        self.every = log_every
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.tokens_per_step = batch_size * seq_length
        self.learning_rate = learning_rate
        self.health = health
        self.echo = echo
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last: dict = {}
        self.time = time.perf_counter()
        writer = lambda name: (tf.summary.create_file_writer(os.path.join(log_dir, name))
                               if log_dir is not None else tf.summary.create_noop_writer())
        self.train_writer = writer("train")
        self.eval_writer = writer("eval") if evaluates else None

    def update(self, step: int, metrics: dict) -> None:
        """Adds one step's metrics; at a log step, writes their means and prints the line."""
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if step % self.every and step != self.num_steps:
            return
        now = time.perf_counter()
        steps_per_s = self.count / max(now - self.time, 1e-9)
        means = {k: v / self.count for k, v in self.sums.items()}
        rates = {"throughput/steps_per_second": steps_per_s,
                 "throughput/sequences_per_second": steps_per_s * self.batch_size,
                 "throughput/tokens_per_second": steps_per_s * self.tokens_per_step}
        learning_rate = self.learning_rate(step - 1)
        with self.train_writer.as_default(step=step):
            for k, v in {**means, **rates, "learning_rate": learning_rate}.items():
                tf.summary.scalar(k, v)
        self.train_writer.flush()
        eta = (self.num_steps - step) / steps_per_s
        self.echo(
            f"step {step:>{len(str(self.num_steps))}}/{self.num_steps} | "
            f"{steps_per_s:.2f} steps/s {steps_per_s * self.tokens_per_step / 1000:.1f}k tok/s | "
            f"ETA {_duration(eta)} | lr {learning_rate:.2e} | {format_metrics(means)}")
        for line in self.health.check(step, means):
            self.echo(line)
        self.last = {**means, **rates, "learning_rate": learning_rate}
        self.sums, self.count, self.time = {}, 0, now

    def write_eval(self, step: int, metrics: dict) -> None:
        with self.eval_writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(k, v)
        self.eval_writer.flush()
        self.echo(f"eval at step {step} | {format_metrics(metrics)}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        for writer in (self.train_writer, self.eval_writer):
            if writer is not None:
                writer.close()


_CONSOLE_METRICS = (  # (metric, console label) in reading order
    ("loss", "loss"), ("generator_loss", "gen"), ("generator_accuracy", "gen_acc"),
    ("discriminator_loss", "disc"), ("discriminator_accuracy", "disc_acc"),
    ("discriminator_precision", "P"), ("discriminator_recall", "R"),
    ("discriminator_auc", "auc"), ("representation_cosine", "cos"), ("gradient_norm", "|g|"))


def format_metrics(metrics: dict) -> str:
    """The console's ``loss 17.7097 gen 6.1488 ...`` for the metrics it shows."""
    return " ".join(f"{label} {metrics[name]:.4f}" for name, label in _CONSOLE_METRICS
                    if name in metrics)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def learning_rate_at(optimizer: keras.optimizers.Optimizer, step: int) -> float:
    """The rate the optimizer used for the update of step ``step + 1``."""
    schedule = optimizer._learning_rate  # the schedule object (Keras keeps it there)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(schedule(step))
    return float(keras.ops.convert_to_numpy(schedule))
