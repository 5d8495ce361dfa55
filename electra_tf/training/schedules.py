"""The learning-rate schedule of google-research/electra ``model/optimization.py``.

``lr · (1 − min(t,T)/T)^p · min(1, t/W)``: polynomial decay to ``end_learning_rate`` with the
linear warmup *multiplied into* it (:class:`WarmupPolynomialDecay`); ``W`` from the config
(:func:`warmup_steps`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from electra_tf.config import OptimizerConfig


@keras.saving.register_keras_serializable(package="electra_tf")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Polynomial decay times a linear warmup factor, as the reference ``create_optimizer``.

    ``rate(t) = ((lr − end) · (1 − min(t, T) / T)^power + end) · min(1, t / W)``

    The warmup multiplies the decayed rate (it does not replace it): at ``t = W`` the rate is
    ``lr · (1 − W/T)^power``, not ``lr``. At ``t = 0`` the rate is 0, so the reference's first
    step does not move the weights; neither does ours.

    Args:
      learning_rate: peak rate ``lr``.
      decay_steps: ``T``, the total number of optimizer steps; the rate stays at
        ``end_learning_rate`` after it.
      warmup_steps: ``W`` (may be fractional, e.g. 10% of ``T``); 0 disables warmup.
      end_learning_rate: rate reached at ``t = T``.
      power: exponent ``p`` of the decay (1 = linear).
    """

    def __init__(self, learning_rate: float, decay_steps: int, warmup_steps: float = 0.0,
                 end_learning_rate: float = 0.0, power: float = 1.0):
        if decay_steps <= 0:
            raise ValueError(f"WarmupPolynomialDecay: decay_steps={decay_steps} must be > 0 "
                             "(the total number of optimizer steps)")
        if warmup_steps < 0:
            raise ValueError(f"WarmupPolynomialDecay: warmup_steps={warmup_steps} must be >= 0")
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = float(warmup_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)

    def __call__(self, step):
        """Returns the rate (float32 scalar) for ``step`` (integer or float scalar tensor)."""
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        rate = ((self.learning_rate - self.end_learning_rate) * (1.0 - progress) ** self.power
                + self.end_learning_rate)
        if self.warmup_steps > 0:
            rate *= tf.minimum(1.0, step / self.warmup_steps)
        return rate

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
        }


def warmup_steps(config: OptimizerConfig, num_train_steps: int) -> float:
    """``W``: ``warmup_fraction · T`` when the fraction is > 0 (fine-tuning), else warmup_steps."""
    if config.warmup_fraction > 0:
        return config.warmup_fraction * num_train_steps
    return float(config.warmup_steps)
