"""The compiled calls of the pre-training loop: up to N training steps per call, one validation
batch per call, and what their errors mean.

One call of the training function runs ``num_steps`` steps in a ``tf.while_loop`` (the host
round trip per call is paid once for ``train.steps_per_loop`` steps)::

    i = 0
    while i < num_steps and no stop was requested and the loss is finite:
        batch = next(iterator)                             # global batch (cpu/gpu/mirrored)
        per_replica = split across replicas                # or: next(distributed iterator)
        metrics = strategy.run(pretrainer.train_step, (per_replica,))
        rows[i] = metrics; i += 1

Every step's metrics come back (one column per metric), so the loop logs each step as if it had
made one call per step; with op determinism the numbers are the same for any ``num_steps``.
Nothing is converted by AutoGraph: the loop is an explicit ``tf.while_loop`` and the steps have
no Python control flow on tensors (as Keras' own trainer, which does not convert ``train_step``
either), and converting them costs seconds.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from electra_tf.training import distribute


def build_step_functions(strategy: tf.distribute.Strategy, pretrainer, batch_size: int,
                         jit_compile: bool) -> tuple[Callable, Callable]:
    """The training and evaluation ``tf.function``s.

    Args:
      strategy: the run's strategy; ``pretrainer`` was built in its scope.
      pretrainer: its ``train_step`` / ``test_step`` run on one replica's share of a batch and
        return global float32 scalars, among them ``loss``.
      batch_size: the global batch (divisible by the number of replicas).
      jit_compile: compile each replica's step with XLA.

    Returns:
      ``train_loop(iterator, num_steps, stop)``: runs ``num_steps`` (an int32 scalar tensor, so
      any count reuses one trace) training steps, fewer when the loss of a step is not finite or
      when any worker passed ``stop`` = 1 (after the first step: the workers learn it from a
      cross-replica sum in that step, so all of them end the call at the same step). Returns
      each metric as a float32 vector [steps run], ``stop_requests`` included.
      ``eval_step(iterator, stop)``: the metrics of one validation batch, as scalars.
    """
    per_replica = batch_size // strategy.num_replicas_in_sync
    global_iterator = distribute.uses_global_iterator(strategy)
    train_step, test_step = pretrainer.train_step, pretrainer.test_step
    if jit_compile:
        # XLA compiles the per-replica computation (cross-replica sums stay collectives).
        train_step = tf.function(train_step, jit_compile=True, autograph=False)
        test_step = tf.function(test_step, jit_compile=True, autograph=False)

    def one_step(step_fn, iterator, stop):
        batch = (_split_global_batch(strategy, next(iterator), per_replica) if global_iterator
                 else next(iterator))
        replica_fn = functools.partial(_replica_step, step_fn, per_replica=per_replica,
                                       global_iterator=global_iterator)
        outputs = strategy.run(replica_fn, (batch, stop))
        # Metrics are global values, identical on every replica.
        return {k: strategy.experimental_local_results(v)[0] for k, v in outputs.items()}

    @tf.function(autograph=False)
    def train_loop(iterator, num_steps, stop):
        names = []  # the metrics' names, in train_step's order: known once the body is traced

        def body(i, carry_on, rows):
            metrics = one_step(train_step, iterator, stop)
            names[:] = list(metrics)
            carry_on = tf.logical_and(tf.equal(metrics["stop_requests"], 0.0),
                                      tf.math.is_finite(metrics["loss"]))
            return i + 1, carry_on, rows.write(i, tf.stack([metrics[k] for k in names]))

        _, _, rows = tf.while_loop(
            lambda i, carry_on, rows: tf.logical_and(i < num_steps, carry_on), body,
            (tf.constant(0), tf.constant(True), tf.TensorArray(tf.float32, 0, dynamic_size=True)))
        return dict(zip(names, tf.unstack(rows.stack(), num=len(names), axis=1)))

    @tf.function(autograph=False)
    def eval_step(iterator, stop):
        return one_step(test_step, iterator, stop)

    return train_loop, eval_step


def _split_global_batch(strategy: tf.distribute.Strategy, batch: dict, per_replica: int):
    """Hands each replica its contiguous slice of the global batch.

    The loop splits the checkpointed global batch itself, so the input position (and
    ``example_index``, the global position) is the same for any replica count.
    """
    def slice_for(ctx):
        start = ctx.replica_id_in_sync_group * per_replica
        return {k: v[start:start + per_replica] for k, v in batch.items()}

    return strategy.experimental_distribute_values_from_function(slice_for)


def _replica_step(step_fn, batch: dict, stop, per_replica: int, global_iterator: bool) -> dict:
    """``step_fn`` on this replica's batch, plus ``stop_requests``: the workers' stop flags summed.

    Every worker learns that one of them got SIGTERM, so they all stop together.
    """
    replica = tf.distribute.get_replica_context()
    if not global_iterator:  # per-replica datasets number their examples 0 … per_replica − 1
        batch = dict(batch, example_index=batch["example_index"]
                     + replica.replica_id_in_sync_group * per_replica)
    # (Cast inside the replica: an all-reduce needs a value placed on a replica device.)
    return {**step_fn(batch), "stop_requests": replica.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(stop, tf.float32))}


def per_step(columns: dict) -> list[dict]:
    """``train_loop``'s metric columns as one ``{name: float}`` per step, in step order."""
    values = {k: np.asarray(v) for k, v in columns.items()}
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(values["loss"]))]


def steps_in_call(step: int, steps_per_loop: int, num_steps: int, every: tuple[int, ...]) -> int:
    """How many steps the call after ``step`` runs: at most ``steps_per_loop``, ending at
    ``num_steps`` or at the next multiple of any interval in ``every`` (log, checkpoint,
    evaluation), where the loop has work to do between calls."""
    end = min([num_steps] + [(step // interval + 1) * interval for interval in every])
    return min(steps_per_loop, end - step)


_DETERMINISM = re.compile("determinis", re.IGNORECASE)
_NODE = re.compile(r"\{\{node ([^}]+)\}\}")


def determinism_error_message(error: tf.errors.OpError) -> Optional[str]:
    """One line for an op that op determinism (``train.deterministic``) refuses, else None.

    With op determinism enabled, TensorFlow raises ``UnimplementedError`` for an op without a
    deterministic kernel on this device (on GPUs: some segment reductions, scatters, ...); its
    message says so and names the node. The line names the op and the trade-off of turning
    determinism off.
    """
    if not isinstance(error, tf.errors.UnimplementedError):
        return None
    said = [line.strip() for line in error.message.splitlines()
            if _DETERMINISM.search(line) and not line.strip().startswith('File "')]
    if not said:
        return None
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[\[.*$", "", said[0])
    nodes = _NODE.findall(error.message)
    op = f"op {nodes[-1]}" if nodes else "an op"
    return (f"{op} has no deterministic implementation on this device ({reason}); "
            "train.deterministic=true (the default) refuses it. --set train.deterministic=false "
            "runs it, trading exact (bit-identical) resume and reproducible numbers for speed")
