"""Dynamic loss scaling for ``mixed_float16`` (Micikevicius et al. 2018, "Mixed Precision
Training"), with the rule and defaults of Keras' ``LossScaleOptimizer``.

A float16 backward pass flushes gradients below ~6e-8 to zero. Multiplying the loss by a large
scale ``S`` moves them into range; the optimizer divides the summed gradients by ``S`` before it
clips and applies them (:meth:`electra_tf.training.optimization.AdamWeightDecay.apply`). ``S``
adapts: a step whose gradient is not finite is skipped and halves it; ``growth_interval``
consecutive finite steps double it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

INITIAL_SCALE = 2.0 ** 15  # Keras' LossScaleOptimizer initial_scale
GROWTH_INTERVAL = 2000  # Keras' dynamic_growth_steps
FACTOR = 2.0  # Keras halves on overflow and doubles on growth


def next_loss_scale(scale: tf.Tensor, good_steps: tf.Tensor, finite: tf.Tensor,
                    growth_interval: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The loss scale and the finite-step count after one step.

    Args:
      scale: float32 scalar, the scale this step's loss was multiplied by.
      good_steps: integer scalar, finite steps since the scale last changed.
      finite: bool scalar, whether this step's (summed, unscaled) gradient was finite.
      growth_interval: the number of consecutive finite steps after which the scale doubles.

    Returns:
      ``(scale, good_steps)``: halved and 0 after a non-finite step; doubled and 0 after the
      ``growth_interval``-th finite step in a row; else unchanged and ``good_steps + 1``.
    """
    grow = finite & (good_steps + 1 >= growth_interval)
    new_scale = tf.where(finite, tf.where(grow, scale * FACTOR, scale), scale / FACTOR)
    new_good_steps = tf.where(finite & ~grow, good_steps + 1, tf.zeros_like(good_steps))
    return new_scale, new_good_steps


class DynamicLossScale:
    """One optimizer's loss scale: ``scale`` and ``good_steps`` are two of the optimizer's own
    variables (so they are checkpointed with it), updated by :func:`next_loss_scale`.

    Create it in the optimizer's ``build`` (inside ``strategy.scope()``). Every replica computes
    the same update (from the summed gradients), so the variables take the first replica's.

    Args:
      optimizer: the ``keras.optimizers.Optimizer`` that owns the variables.
      initial_scale: the scale of the first step.
      growth_interval: consecutive finite steps after which the scale doubles.
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, initial_scale: float,
                 growth_interval: int):
        self.growth_interval = growth_interval
        # The checkpoint keys that Keras' LossScaleOptimizer had (training/checkpointing.py
        # optimizer_state), so that its checkpoints restore.
        self.scale = optimizer.add_variable(
            (), initializer=keras.initializers.Constant(initial_scale), dtype="float32",
            aggregation="only_first_replica", name="loss_scale.dynamic_scale")
        self.good_steps = optimizer.add_variable(
            (), dtype="int64", aggregation="only_first_replica", name="loss_scale.step_counter")

    def unscale(self, grads: Sequence[Optional[tf.Tensor]]) -> list[Optional[tf.Tensor]]:
        """``grads`` divided by the current scale (None entries kept)."""
        scale = tf.convert_to_tensor(self.scale)
        return [None if g is None else g / tf.cast(scale, g.dtype) for g in grads]

    def update(self, finite: tf.Tensor) -> None:
        """Halves, keeps or doubles the scale after a step (:func:`next_loss_scale`)."""
        scale, good_steps = next_loss_scale(
            tf.convert_to_tensor(self.scale), tf.convert_to_tensor(self.good_steps), finite,
            self.growth_interval)
        self.scale.assign(scale)
        self.good_steps.assign(good_steps)


def nan_unless(finite: tf.Tensor,
               grads: Sequence[Optional[tf.Tensor]]) -> list[Optional[tf.Tensor]]:
    """``grads`` unchanged if ``finite``, else every element nan (None entries kept).

    How a skipped step reaches the per-variable update without a branch around the merge call
    of ``Optimizer.apply``: each variable's ``update_step`` sees a non-finite gradient and
    keeps its values, and all variables agree.
    """
    return [None if g is None else tf.where(finite, g, tf.constant(float("nan"), g.dtype))
            for g in grads]
