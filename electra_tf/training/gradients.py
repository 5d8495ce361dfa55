"""Gradients into one optimizer step: accumulation over micro-batches, the cross-replica sum,
clipping and the update (google-research/electra ``model/optimization.py``).

:func:`accumulate_gradients` sums micro-batch gradients inside one step; :func:`apply_gradients`
sums them across replicas once, lets the optimizer clip that sum to its global norm and update
the variables (:mod:`electra_tf.training.optimization`), and returns the norm for logging.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from electra_tf.training.optimization import AdamWeightDecay, _cross_replica_sum


def _inner(optimizer: keras.optimizers.Optimizer) -> AdamWeightDecay:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(inner, AdamWeightDecay):
        raise TypeError(f"expected an electra_tf AdamWeightDecay/Lamb (possibly inside a "
                        f"LossScaleOptimizer), got {type(inner).__name__}")
    return inner


def apply_gradients(optimizer: keras.optimizers.Optimizer, grads: Sequence[Optional[tf.Tensor]],
                    variables: Sequence[keras.Variable]) -> tf.Tensor:
    """One optimizer step from this replica's gradients; returns the global gradient norm.

    Sums the gradients across replicas once (a no-op on one device), then applies them: the
    optimizer clips that sum to ``global_clipnorm`` and updates the variables without summing
    again. With a ``LossScaleOptimizer``, pass the gradients of ``optimizer.scale_loss(loss)``;
    the finiteness check then sees the same summed gradients on every replica, and a step with
    non-finite gradients is skipped (the returned norm is then inf or nan).

    Args:
      optimizer: from :func:`build_optimizer`.
      grads: gradients of this replica's loss, aligned with ``variables``; normalize the loss by
        the *global* batch (all replicas, all micro-batches) so that the sum is the gradient of
        the global batch. None entries (unused variables) are skipped.
      variables: the trained variables.

    Returns:
      float32 scalar: the global norm of the summed, unscaled gradient before clipping (for
      TensorBoard).
    """
    inner = _inner(optimizer)
    # Embedding lookups give IndexedSlices with one row per lookup; global_norm would square
    # repeated rows separately instead of summing them first, so norm and clipping need dense.
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    grads = _cross_replica_sum(grads)
    norm = tf.linalg.global_norm([g for g in grads if g is not None])
    if inner is not optimizer:
        if not optimizer.built:
            optimizer.build(list(variables))
        norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
    with inner._gradients_already_summed():
        optimizer.apply(grads, variables)
    return norm


def accumulate_gradients(
    grad_fn: Callable[[Any], tuple[Sequence[Optional[tf.Tensor]], Any]],
    batch: Any,
    variables: Sequence[keras.Variable],
    accumulation_steps: int,
) -> tuple[list[Optional[tf.Tensor]], Any]:
    """Sums ``grad_fn`` over ``accumulation_steps`` equal micro-batches of ``batch``.

    The micro-batches run one after the other in a ``tf.while_loop``, so only one micro-batch's
    activations are alive at a time (the point of accumulating: Base/Large batch sizes on real
    GPUs). Clip and apply the sum afterwards with :func:`apply_gradients`: one optimizer step,
    clipped after accumulating, as one step on the whole batch.

    Args:
      grad_fn: ``grad_fn(micro_batch) -> (grads, outputs)``: ``grads`` aligned with
        ``variables`` (None for a variable the loss does not use), ``outputs`` a nest of tensors
        to be summed over micro-batches (loss numerators, counts...). Normalize the loss by the
        number of examples/tokens of the *global* batch, so the sum equals the gradient of the
        whole batch.
      batch: a nest of tensors with a common leading (batch) dimension ``B`` divisible by
        ``accumulation_steps``; micro-batch ``i`` holds rows ``[i·B/k, (i+1)·B/k)``.
      variables: the trained variables (dense accumulators take their shapes).
      accumulation_steps: ``k`` >= 1; 1 calls ``grad_fn(batch)`` once.

    Returns:
      ``(grads, outputs)`` summed over the micro-batches; ``grads`` dense, None where
      ``grad_fn`` returned None.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps={accumulation_steps} must be >= 1")
    if accumulation_steps == 1:
        grads, outputs = grad_fn(batch)
        return list(grads), outputs
    k = accumulation_steps

    def split(t):
        size = t.shape[0]
        if size is not None and size % k:
            raise ValueError(f"accumulate_gradients: batch dimension {size} is not divisible by "
                             f"accumulation_steps={k}")
        return tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], axis=0))

    micro_batches = tf.nest.map_structure(split, batch)

    def micro_grads(i):
        grads, outputs = grad_fn(tf.nest.map_structure(lambda t: t[i], micro_batches))
        grads = list(grads)
        if len(grads) != len(variables):
            raise ValueError(f"grad_fn returned {len(grads)} gradients for {len(variables)} "
                             "variables")
        return grads, outputs

    first, outputs = micro_grads(0)
    present = [i for i, g in enumerate(first) if g is not None]
    dense = lambda g, v: tf.cast(tf.convert_to_tensor(g), v.dtype)  # noqa: E731
    sums = [dense(first[i], variables[i]) for i in present]

    def body(i, sums, outputs):
        grads, more = micro_grads(i)
        sums = [s + dense(grads[j], variables[j]) for s, j in zip(sums, present)]
        return i + 1, sums, tf.nest.map_structure(tf.add, outputs, more)

    _, sums, outputs = tf.while_loop(
        lambda i, *_: i < k, body, (tf.constant(1), sums, outputs), parallel_iterations=1)
    grads: list[Optional[tf.Tensor]] = [None] * len(variables)
    for j, s in zip(present, sums):
        grads[j] = s
    return grads, outputs
