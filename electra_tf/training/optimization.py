"""Optimization as google-research/electra ``model/optimization.py``, in Keras 3.

What the reference does, and where it lives here:

- learning rate ``lr · (1 − min(t,T)/T)^p · min(1, t/W)`` (polynomial decay to
  ``end_learning_rate`` with the linear warmup *multiplied into* it):
  :class:`~electra_tf.training.schedules.WarmupPolynomialDecay`;
- Adam (β1 0.9, β2 0.999, ε 1e-6) **without bias correction** and decoupled weight decay added
  to the update, ``w ← w − lr · (m / (√v + ε) + wd · w)``: :class:`AdamWeightDecay`; LAMB for
  large batches: :class:`Lamb`;
- no weight decay on LayerNorm weights or biases, matched here by *variable identity*
  (:func:`decay_exclusions`): Keras 3 variables carry short names (``gamma``, ``beta``), so the
  reference's name patterns ``LayerNorm``/``layer_norm`` would decay every LayerNorm gamma;
- global-norm clipping (1.0) of the gradient of the whole global batch. Keras 3 clips each
  replica's partial gradient and sums across replicas afterwards; :meth:`AdamWeightDecay.apply`
  first sums, unscales (``mixed_float16``, :mod:`~electra_tf.training.loss_scale`) and clips
  (:func:`~electra_tf.training.gradients.global_gradients`), then updates, and returns the norm
  for logging (:func:`~electra_tf.training.gradients.apply_gradients`);
- layer-wise learning-rate decay for fine-tuning (``finetune`` ``_get_layer_lrs``):
  :func:`layerwise_lr_multipliers`, applied per variable inside the update;
- accumulation inside one step: :func:`~electra_tf.training.gradients.accumulate_gradients`;
- :func:`build_optimizer` puts schedule, optimizer, exclusions and loss scaling together.

Everything here runs inside ``tf.function``, under ``jit_compile`` and under ``tf.distribute``
strategies; build optimizers inside ``strategy.scope()``.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

import keras
import tensorflow as tf

from electra_tf.config import OptimizerConfig
from electra_tf.training.gradients import global_gradients
from electra_tf.training.loss_scale import GROWTH_INTERVAL, INITIAL_SCALE, DynamicLossScale
from electra_tf.training.schedules import WarmupPolynomialDecay, warmup_steps

Layers = Union[keras.layers.Layer, Sequence[keras.layers.Layer]]


# ---------------------------------------------------------------------------------------------
# Optimizers.

@keras.saving.register_keras_serializable(package="electra_tf")
class AdamWeightDecay(keras.optimizers.Optimizer):
    """Adam with decoupled weight decay, as the reference ``AdamWeightDecayOptimizer``.

    Per variable ``w`` with gradient ``g`` (all float32; the moments have the variable's shape)::

        m ← β1 · m + (1 − β1) · g
        v ← β2 · v + (1 − β2) · g²
        m̂, v̂ = m / (1 − β1^t), v / (1 − β2^t)   if bias_correction else m, v
        u = m̂ / (√v̂ + ε) + wd · w                 (wd · w only for decayed variables)
        w ← w − lr · mult(w) · u

    ``lr`` is the schedule's rate at the optimizer step, ``mult(w)`` the variable's learning-rate
    multiplier (1 without ``lr_multipliers``). Weight decay is multiplied by the per-variable rate,
    as in the reference (``update_with_lr = learning_rate * update``), unlike Keras' own AdamW.
    ``g`` is the clipped gradient of the global batch: see :meth:`apply`.

    With ``initial_loss_scale`` (``mixed_float16``), :meth:`scale_loss` multiplies the loss by a
    dynamic scale (``loss_scale``, :mod:`~electra_tf.training.loss_scale`) and :meth:`apply`
    divides the gradient by it. A step whose gradient is not finite is *skipped*: ``m``, ``v``
    and the weights keep their values (no weight decay either) and the scale halves, but
    ``iterations`` advances (unlike Keras' ``LossScaleOptimizer``): it always equals the number
    of :meth:`apply` calls, the loop's global step, and the schedule counts skipped steps too.

    Args:
      learning_rate: a float or a schedule (:class:`WarmupPolynomialDecay`).
      weight_decay: decoupled weight-decay rate ``wd``; exclude variables with
        ``exclude_from_weight_decay(var_list=decay_exclusions(model))``.
      beta_1, beta_2, epsilon: Adam constants (reference: 0.9, 0.999, 1e-6).
      bias_correction: divide the moments by ``1 − β^t`` (the reference does not).
      clip_norm: clip the cross-replica, unscaled gradient to this global norm; None: off.
      lr_multipliers: ``{variable.path: multiplier}`` for every variable the optimizer is built
        on (layer-wise decay, :func:`layerwise_lr_multipliers`); None means 1 everywhere.
      initial_loss_scale: dynamic loss scaling from this scale (``mixed_float16``); None: off.
      loss_scale_growth_interval: consecutive finite steps after which the scale doubles.
      **kwargs: other ``keras.optimizers.Optimizer`` arguments (``name``, ``use_ema``...). Keras'
        own clipping, loss scaling and accumulation are refused: they would act on per-replica
        gradients, or after :meth:`apply`'s.
    """

    def __init__(self, learning_rate: Any = 1e-3, weight_decay: float = 0.0,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6,
                 bias_correction: bool = False, clip_norm: Optional[float] = None,
                 lr_multipliers: Optional[dict[str, float]] = None,
                 initial_loss_scale: Optional[float] = None,
                 loss_scale_growth_interval: int = GROWTH_INTERVAL, **kwargs):
        for name in ("clipnorm", "global_clipnorm", "clipvalue", "loss_scale_factor",
                     "gradient_accumulation_steps"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"{type(self).__name__} does not support {name}={kwargs[name]!r}: use "
                    "clip_norm (the cross-replica gradient's global norm), initial_loss_scale "
                    "and electra_tf.training.gradients.accumulate_gradients")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay or None,
                         **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.bias_correction = bias_correction
        self.clip_norm = clip_norm or None
        self.lr_multipliers = dict(lr_multipliers) if lr_multipliers is not None else None
        self.initial_loss_scale = initial_loss_scale or None
        self.loss_scale_growth_interval = int(loss_scale_growth_interval)
        self.loss_scale: Optional[DynamicLossScale] = None  # created by build()

    def build(self, variables):
        """Creates the moments ``m``, ``v`` (zeros, one pair per variable) and the loss scale."""
        if self.built:
            return
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])
        self._multipliers = self._resolve_multipliers(variables)
        if self.initial_loss_scale:
            self.loss_scale = DynamicLossScale(self, self.initial_loss_scale,
                                               self.loss_scale_growth_interval)

    def _resolve_multipliers(self, variables) -> list[float]:
        """Per-variable multipliers in build order; every variable needs one when given."""
        if self.lr_multipliers is None:
            return [1.0] * len(variables)
        paths = [v.path for v in variables]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise ValueError(
                f"lr_multipliers are keyed by variable path, but these paths name several "
                f"variables: {duplicates}; give the layers distinct names")
        missing = [p for p in paths if p not in self.lr_multipliers]
        if missing:
            raise ValueError(
                f"lr_multipliers has no entry for {len(missing)} variable(s): {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} (every trained variable needs one, as the "
                "reference's 'No learning rate specified for variable')")
        return [float(self.lr_multipliers[p]) for p in paths]

    def scale_loss(self, loss):
        """``loss`` times the current loss scale (unchanged without loss scaling)."""
        if not self.initial_loss_scale:
            return loss
        scale = self.initial_loss_scale if self.loss_scale is None else self.loss_scale.scale
        return loss * tf.cast(scale, loss.dtype)

    def apply(self, grads, trainable_variables=None) -> tf.Tensor:
        """One optimizer step from this replica's gradients; returns their global norm.

        :func:`~electra_tf.training.gradients.global_gradients` (densify, sum across replicas,
        unscale, clip; all nan on a skipped step), Keras' ``Optimizer.apply`` (:meth:`update_step`
        per variable, ``iterations + 1``), then the loss-scale update.

        Args:
          grads: gradients of this replica's loss (of ``scale_loss(loss)`` with loss scaling),
            aligned with ``trainable_variables``; None for unused variables. Normalize the loss
            by the *global* batch so that the sum is the global batch's gradient.
          trainable_variables: the trained variables; None: those the optimizer was built on.

        Returns:
          float32 scalar: the global norm of the summed, unscaled gradient before clipping (for
          TensorBoard); inf or nan on a skipped step.
        """
        if trainable_variables is not None and not self.built:
            self.build(list(trainable_variables))
        grads, norm = global_gradients(grads, self.clip_norm, self.loss_scale)
        super().apply(grads, trainable_variables)
        if self.loss_scale is not None:
            self.loss_scale.update(tf.math.is_finite(norm))
        return norm

    def update_step(self, gradient, variable, learning_rate):
        """Applies one update to ``variable`` (see the class docstring for the formula)."""
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
        lr = tf.cast(learning_rate, dtype) * self._multipliers[index]
        m, v = self._m[index], self._v[index]
        new_m = self.beta_1 * m + (1.0 - self.beta_1) * gradient
        new_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient)
        applied = None
        if self.loss_scale is not None:  # a skipped step (all gradients nan) keeps m, v, w
            applied = tf.reduce_all(tf.math.is_finite(gradient))
            new_m = tf.where(applied, new_m, tf.convert_to_tensor(m))
            new_v = tf.where(applied, new_v, tf.convert_to_tensor(v))
        self.assign(m, new_m)
        self.assign(v, new_v)
        m_hat, v_hat = tf.convert_to_tensor(m), tf.convert_to_tensor(v)
        if self.bias_correction:
            step = tf.cast(self.iterations + 1, dtype)
            m_hat = m_hat / (1.0 - tf.pow(tf.cast(self.beta_1, dtype), step))
            v_hat = v_hat / (1.0 - tf.pow(tf.cast(self.beta_2, dtype), step))
        update = m_hat / (tf.sqrt(v_hat) + self.epsilon)
        decayed = self.weight_decay is not None and self._use_weight_decay(variable)
        if decayed:
            update += self.weight_decay * tf.convert_to_tensor(variable)
        update = lr * self._scale_update(update, variable, decayed)
        if applied is not None:
            update = tf.where(applied, update, tf.zeros_like(update))
        self.assign_sub(variable, update)

    def _scale_update(self, update, variable, decayed: bool):
        del variable, decayed  # LAMB's trust ratio; Adam applies the update as is
        return update

    def _apply_weight_decay(self, variables):
        # Keras decays with the global rate before the update; the decay is part of the update
        # here (update_step), so it follows the per-variable rate, enters LAMB's trust ratio and
        # is skipped with the step.
        del variables

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras' TensorFlow backend (TFOptimizer._backend_update_step) sums the gradients across
        # replicas here, inside Optimizer.apply, after its own clipping and right before
        # update_step. Our apply has summed (then unscaled and clipped) them already; a second
        # sum would multiply them by the number of replicas. Our only Keras gradient-path hook.
        return list(grads_and_vars)

    def get_config(self) -> dict:
        """Hyper-parameters only, as Keras optimizers.

        What binds to particular variables (weight-decay exclusions, ``lr_multipliers``) is not
        part of it: variables are matched by identity, and variable paths change when a model is
        rebuilt differently (e.g. reloaded from a ``.keras`` file). Rebuild the optimizer with
        :func:`build_optimizer` and restore its state from a checkpoint to resume training.
        """
        config = super().get_config()
        config.update({
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "bias_correction": self.bias_correction,
            "clip_norm": self.clip_norm,
            "initial_loss_scale": self.initial_loss_scale,
            "loss_scale_growth_interval": self.loss_scale_growth_interval,
        })
        return config


@keras.saving.register_keras_serializable(package="electra_tf")
class Lamb(AdamWeightDecay):
    """LAMB (You et al. 2020): :class:`AdamWeightDecay` with a per-variable trust ratio.

    The update ``u`` (Adam direction plus weight decay) is rescaled to the variable's norm::

        w ← w − lr · mult(w) · (‖w‖ / ‖u‖) · u      (ratio 1 when either norm is 0)

    Variables excluded from weight decay (LayerNorm weights, biases) are also excluded from the
    trust ratio, as ``tfa.optimizers.LAMB`` does by default. Within a variable the ratio cancels
    any uniform scaling of the Adam direction, so bias correction only changes its balance with
    the weight-decay term. Same arguments as :class:`AdamWeightDecay`.
    """

    def _scale_update(self, update, variable, decayed: bool):
        if not decayed:
            return update
        w_norm = tf.norm(tf.convert_to_tensor(variable))
        u_norm = tf.norm(update)
        ratio = tf.where((w_norm > 0) & (u_norm > 0), w_norm / tf.maximum(u_norm, 1e-30), 1.0)
        return ratio * update


# ---------------------------------------------------------------------------------------------
# Which variables, which rates.

def _as_layers(model_or_layers: Layers) -> list[keras.layers.Layer]:
    layers = [model_or_layers] if isinstance(model_or_layers, keras.layers.Layer) else list(
        model_or_layers)
    for layer in layers:
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"expected a keras Layer/Model or a list of them, got {type(layer).__name__}: "
                "LayerNorm weights are found through their layers, not their (short) names")
    return layers


def _unique(variables: Iterable) -> list:
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def decay_exclusions(model_or_layers: Layers) -> list[keras.Variable]:
    """The trainable variables that get no weight decay: LayerNorm weights and biases.

    The reference excludes variables whose name matches ``LayerNorm``, ``layer_norm`` or
    ``bias``. Keras 3 names a LayerNorm's weights ``gamma``/``beta``, so LayerNorm variables are
    found structurally (every variable of every ``keras.layers.LayerNormalization`` inside the
    model, nested at any depth) and biases by their short name containing ``bias`` (Dense and
    EinsumDense ``bias``, an MLM head's ``output_bias``...).

    Args:
      model_or_layers: a built ``keras.Model``/``Layer``, or a list of them (e.g. the generator,
        the discriminator and the heads).

    Returns:
      The excluded variables (each once, in the models' variable order). Pass them to
      ``optimizer.exclude_from_weight_decay(var_list=...)`` before the optimizer is built.
    """
    layers = _as_layers(model_or_layers)
    layer_norm_ids = {
        id(v)
        for layer in layers
        for sub in layer._flatten_layers(include_self=True, recursive=True)
        if isinstance(sub, keras.layers.LayerNormalization)
        for v in sub.weights
    }
    variables = _unique(v for layer in layers for v in layer.trainable_variables)
    return [v for v in variables if id(v) in layer_norm_ids or "bias" in v.name]


def layerwise_lr_multipliers(encoder, head_variables: Iterable, decay: float) -> dict[str, float]:
    """Learning-rate multipliers ``d^(L + 2 − depth)``, as the reference ``_get_layer_lrs``.

    Depths: the embeddings and their projection (``encoder.embedding_variables()``) 0, transformer
    layer ``i`` (``encoder.transformer_layers[i]``) ``i + 1``, the task head ``L + 2``. So the head
    gets ``d⁰ = 1``, the top layer ``d²``, the bottom layer ``d^(L+1)``, the embeddings
    ``d^(L+2)``.

    Args:
      encoder: an ``ElectraEncoder`` (built), or any object with ``embedding_variables()`` and
        ``transformer_layers``.
      head_variables: the trainable variables of the task head(s).
      decay: ``d``; 1.0 gives every variable the multiplier 1.

    Returns:
      ``{variable.path: multiplier}`` for every trainable variable of the encoder and the head,
      to pass as ``lr_multipliers`` to :func:`build_optimizer`.

    Raises:
      ValueError: a variable belongs to two groups, or an encoder variable to none.
    """
    layers = list(encoder.transformer_layers)
    top = len(layers) + 2
    groups = [(0, encoder.embedding_variables())]
    groups += [(i + 1, layer.trainable_variables) for i, layer in enumerate(layers)]
    groups += [(top, head_variables)]
    multipliers: dict[str, float] = {}
    for depth, variables in groups:
        for v in _unique(variables):
            if v.path in multipliers:
                raise ValueError(f"variable {v.path} is in two layer-wise decay groups "
                                 "(embeddings / transformer layers / head)")
            multipliers[v.path] = float(decay) ** (top - depth)
    missing = [v.path for v in encoder.trainable_variables if v.path not in multipliers]
    if missing:
        raise ValueError(
            f"encoder variables {missing} are neither embedding_variables() nor in "
            "transformer_layers: layer-wise decay cannot give them a depth")
    return multipliers


# ---------------------------------------------------------------------------------------------
# Building.

def build_optimizer(config: OptimizerConfig, num_train_steps: int, model: Layers,
                    lr_multipliers: Optional[dict[str, float]] = None, *,
                    mixed_precision: str = "float32") -> AdamWeightDecay:
    """Schedule + optimizer + weight-decay exclusions (+ loss scaling), built on ``model``.

    Call it inside ``strategy.scope()`` after the model is built (its variables exist): the
    optimizer creates its moments here, next to the variables.

    Args:
      config: ``config.optimizer`` (name, rate, warmup, decay, Adam constants, clipping).
      num_train_steps: ``T``, the number of optimizer steps (``train.num_steps``, or
        epochs × steps per epoch when fine-tuning).
      model: the trained model(s); their trainable variables are optimized.
      lr_multipliers: ``{variable.path: multiplier}`` (:func:`layerwise_lr_multipliers`).
      mixed_precision: ``train.mixed_precision``; ``mixed_float16`` turns on the optimizer's
        dynamic loss scaling (as Keras: from 2**15); ``mixed_bfloat16`` needs none.

    Returns:
      An :class:`AdamWeightDecay` or :class:`Lamb`, the one optimizer in every precision.
    """
    optimizers = {"adamw": AdamWeightDecay, "lamb": Lamb}
    if config.name not in optimizers:
        raise ValueError(f"optimizer.name={config.name!r} is not one of {', '.join(optimizers)}")
    if mixed_precision not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise ValueError(f"mixed_precision={mixed_precision!r} is not one of float32, "
                         "mixed_float16, mixed_bfloat16")
    layers = _as_layers(model)
    variables = _unique(v for layer in layers for v in layer.trainable_variables)
    if not variables:
        raise ValueError("build_optimizer: the model has no trainable variables yet; build it "
                         "(call it on a batch) first")
    schedule = WarmupPolynomialDecay(
        learning_rate=config.learning_rate, decay_steps=num_train_steps,
        warmup_steps=warmup_steps(config, num_train_steps),
        end_learning_rate=config.end_learning_rate, power=config.decay_power)
    optimizer = optimizers[config.name](
        learning_rate=schedule, weight_decay=config.weight_decay, beta_1=config.beta_1,
        beta_2=config.beta_2, epsilon=config.epsilon, bias_correction=config.bias_correction,
        clip_norm=config.clip_norm or None, lr_multipliers=lr_multipliers,
        initial_loss_scale=INITIAL_SCALE if mixed_precision == "mixed_float16" else None)
    optimizer.exclude_from_weight_decay(var_list=decay_exclusions(layers))
    optimizer.build(variables)
    return optimizer
