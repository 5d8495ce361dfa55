"""Gradients into one optimizer step (google-research/electra ``model/optimization.py``):
accumulation over micro-batches, then the one path from a replica's gradients to the update.

:func:`accumulate_gradients` sums micro-batch gradients inside one step. :func:`global_gradients`
is the only place where gradients are densified, summed across replicas, unscaled and clipped,
in that order; :meth:`~electra_tf.training.optimization.AdamWeightDecay.apply` runs it before
every update, whether it is called by :func:`apply_gradients` (which returns the norm for
logging) or by Keras (``model.fit``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import keras
import tensorflow as tf

from electra_tf.training.loss_scale import DynamicLossScale, nan_unless

Gradients = Sequence[Optional[tf.Tensor]]


def _cross_replica_sum(grads: Gradients) -> list[Optional[tf.Tensor]]:
    """Sums gradients over the replicas of the current replica context (None entries kept);
    unchanged with a single replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(grads)
    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM,
                                     [g for g in grads if g is not None]))
    return [None if g is None else next(summed) for g in grads]


def global_gradients(grads: Gradients, clip_norm: Optional[float],
                     loss_scale: Optional[DynamicLossScale] = None,
                     ) -> tuple[list[Optional[tf.Tensor]], tf.Tensor]:
    """This replica's gradients → the clipped gradient of the global batch, and its norm.

    1. ``IndexedSlices`` (embedding lookups, one row per lookup) become dense, so that the norm
       squares each row's summed gradient rather than each lookup's part;
    2. summed across the replicas of the current replica context (no-op on one device): the
       gradient of the global batch, identical on every replica;
    3. divided by the loss scale (``mixed_float16``);
    4. the global norm. With loss scaling a step whose norm is not finite (an inf or nan, or a
       norm beyond float32, which could not be clipped either) is skipped: every gradient
       becomes nan (:func:`~electra_tf.training.loss_scale.nan_unless`);
    5. clipped to ``clip_norm`` by that norm, the unscaled one (clipping the still-scaled
       gradient would clip the true one at ``clip_norm / scale``).

    Args:
      grads: gradients of this replica's (scaled) loss; None entries are kept.
      clip_norm: the global norm to clip to; None: no clipping.
      loss_scale: the optimizer's loss scale; None without loss scaling.

    Returns:
      ``(grads, norm)``: dense gradients and the float32 global norm before clipping (inf or
      nan on a skipped step).
    """
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    grads = _cross_replica_sum(grads)
    if loss_scale is not None:
        grads = loss_scale.unscale(grads)
    norm = tf.linalg.global_norm([g for g in grads if g is not None])
    if loss_scale is not None:
        grads = nan_unless(tf.math.is_finite(norm), grads)
    if clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    return list(grads), norm


def apply_gradients(optimizer: keras.optimizers.Optimizer, grads: Gradients,
                    variables: Sequence[keras.Variable]) -> tf.Tensor:
    """One optimizer step from this replica's gradients; returns the global gradient norm.

    The optimizer's ``apply`` (:meth:`~electra_tf.training.optimization.AdamWeightDecay.apply`)
    runs :func:`global_gradients`, updates the variables and, with loss scaling, updates the
    scale; a step with non-finite gradients is then skipped (weights and moments unchanged,
    ``optimizer.iterations`` + 1, the returned norm inf or nan).

    Args:
      optimizer: from :func:`~electra_tf.training.optimization.build_optimizer`.
      grads: gradients of this replica's loss (of ``optimizer.scale_loss(loss)``), aligned with
        ``variables``; normalize the loss by the *global* batch (all replicas, all
        micro-batches) so that the sum is the gradient of the global batch. None entries
        (unused variables) are skipped.
      variables: the trained variables.

    Returns:
      float32 scalar: the global norm of the summed, unscaled gradient before clipping (for
      TensorBoard).

    Raises:
      TypeError: ``optimizer`` is not an electra_tf AdamWeightDecay/Lamb, e.g. a stock Keras
        optimizer (it would clip each replica's partial gradient) or the ``LossScaleOptimizer``
        that ``Model.compile`` wraps around any optimizer of a ``mixed_float16`` model unless
        given ``auto_scale_loss=False`` (it would unscale twice).
    """
    # Imported here: optimization imports this module (AdamWeightDecay.apply runs
    # global_gradients).
    from electra_tf.training.optimization import AdamWeightDecay

    if not isinstance(optimizer, AdamWeightDecay):
        raise TypeError(
            f"apply_gradients needs an electra_tf AdamWeightDecay/Lamb (build_optimizer), got "
            f"{type(optimizer).__name__}; a mixed_float16 model must be compiled with "
            "auto_scale_loss=False, the optimizer scales the loss itself")
    return optimizer.apply(grads, variables)


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
