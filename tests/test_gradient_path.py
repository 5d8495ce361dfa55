"""The one gradient path (electra_tf.training.gradients.global_gradients, run by
AdamWeightDecay.apply): densify → cross-replica sum → unscale → finite check → clip → update,
with dynamic loss scaling owned by the optimizer (electra_tf.training.loss_scale).

Checked here: the loss-scale rule on hand-checkable values; clipping under mixed_float16 equals
the float32 clipped update; clipping sees the unscaled norm; an overflow step keeps weights and
moments, counts as a step and halves the scale, which grows back after its interval; the path
compiles with XLA; two replicas equal one (float32 and mixed_float16, MirroredStrategy on two
logical CPUs in a fresh process); debug_tiny under mixed_float16 counts its skipped steps.
"""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_tf.config import OptimizerConfig
from electra_tf.config_io import load_config
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.training import gradients, loss_scale
from electra_tf.training import optimization as opt_lib

CLIP = 0.1


def _model(dtype="float32", seed=0):
    """Embedding(12, 4) → mean over 3 positions → Dense(4) → LayerNorm → Dense(1) in ``dtype``
    (a Keras dtype policy). The embedding's gradient arrives as IndexedSlices with repeated
    rows (the batch repeats ids)."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(12, 4, dtype=dtype, name="embed")(ids)
    h = keras.layers.GlobalAveragePooling1D(dtype=dtype)(h)
    h = keras.layers.Dense(4, dtype=dtype, name="hidden")(h)
    h = keras.layers.LayerNormalization(dtype=dtype, name="norm")(h)
    return keras.Model(ids, keras.layers.Dense(1, dtype=dtype, name="out")(h), name="small")


def _batch():
    rng = np.random.RandomState(0)
    return rng.randint(0, 6, size=(8, 3)).astype(np.int32), rng.randn(8, 1).astype(np.float32)


def _loss(model, x, y):
    """Squared error normalized by the global batch of 8, in float32, and divided by 64 so that
    the gradient (largest element ~8 / 64) times the initial loss scale 2^15 fits float16
    (65504); test_debug_tiny_... covers first steps that overflow."""
    return tf.reduce_sum(tf.square(tf.cast(model(x), tf.float32) - y)) / (8.0 * 64.0)


def _config():
    # epsilon 1: Adam's step then depends on the gradient's size, so clipping is visible.
    return OptimizerConfig(learning_rate=0.1, warmup_steps=0, epsilon=1.0, clip_norm=CLIP,
                           weight_decay=0.01)


def _grads(model, optimizer, x, y):
    with tf.GradientTape() as tape:
        scaled = optimizer.scale_loss(_loss(model, x, y))
    return tape.gradient(scaled, model.trainable_variables)


def _flat(variables):
    return np.concatenate([np.ravel(np.asarray(v)) for v in variables])


# ---------------------------------------------------------------------------------------------
# The loss-scale rule.

def test_next_loss_scale_halves_keeps_and_doubles():
    def step(scale, good, finite, interval=3):
        s, g = loss_scale.next_loss_scale(tf.constant(scale), tf.constant(good, tf.int64),
                                          tf.constant(finite), interval)
        return float(s), int(g)

    assert step(8.0, 0, True) == (8.0, 1)
    assert step(8.0, 1, True) == (8.0, 2)
    assert step(8.0, 2, True) == (16.0, 0)  # the 3rd finite step in a row
    assert step(8.0, 2, False) == (4.0, 0)
    assert step(8.0, 0, False) == (4.0, 0)


# ---------------------------------------------------------------------------------------------
# One device.

def test_clipping_under_mixed_float16_equals_the_float32_clipped_update():
    x, y = _batch()
    reference, model = _model("float32"), _model("mixed_float16")
    model.set_weights(reference.get_weights())
    plain = opt_lib.build_optimizer(_config(), 10, reference)
    scaled = opt_lib.build_optimizer(_config(), 10, model, mixed_precision="mixed_float16")
    assert model.layers[3].compute_dtype == "float16"
    for _ in range(2):
        ref_grads = _grads(reference, plain, x, y)
        assert isinstance(ref_grads[0], tf.IndexedSlices)  # repeated rows: densified first
        dense_norm = np.sqrt(sum(np.sum(np.square(tf.convert_to_tensor(g))) for g in ref_grads))
        ref_norm = gradients.apply_gradients(plain, ref_grads, reference.trainable_variables)
        np.testing.assert_allclose(float(ref_norm), dense_norm, rtol=1e-6)
        norm = gradients.apply_gradients(scaled, _grads(model, scaled, x, y),
                                         model.trainable_variables)
        assert float(ref_norm) > 2 * CLIP  # clipping is active
        # float16 activations: the norm agrees to float16 precision (measured 5e-4 relative).
        np.testing.assert_allclose(float(norm), float(ref_norm), rtol=3e-3)
    assert float(scaled.loss_scale.scale) == 2.0 ** 15  # no step was skipped
    assert int(scaled.iterations) == int(plain.iterations) == 2
    # Each step moves a weight by up to ~1e-3; float16 changed them by 1e-6 (measured). A step
    # clipped at another norm (this one is 3x the clip) would differ by ~1e-3.
    np.testing.assert_allclose(_flat(model.trainable_variables),
                               _flat(reference.trainable_variables), rtol=0, atol=2e-5)


def test_clipping_sees_the_unscaled_norm():
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([0.03, -0.04, 0.0], np.float32)  # norm 0.05 < CLIP; scaled by 2^15: 1638
    config = _config()

    def step(gradient, **options):
        """The change of ``w0`` by one step, and the returned norm."""
        variable = keras.Variable(w0, name="kernel")
        optimizer = opt_lib.AdamWeightDecay(
            config.learning_rate, epsilon=config.epsilon, **options)
        norm = optimizer.apply([tf.constant(gradient)], [variable])
        return variable.numpy() - w0, float(norm)

    unclipped, _ = step(g)
    scaled, norm = step(g * 2.0 ** 15, clip_norm=CLIP, initial_loss_scale=2.0 ** 15)
    np.testing.assert_allclose(norm, 0.05, rtol=1e-6)
    np.testing.assert_allclose(scaled, unclipped, rtol=1e-4)  # not clipped
    # Clipping the scaled gradient (then unscaling) would have shrunk it 0.1 / 1638 times.
    wrong, _ = step(g * CLIP / (0.05 * 2.0 ** 15))
    assert np.max(np.abs(wrong)) < 0.01 * np.max(np.abs(unclipped))

    # Above the clip norm: the loss-scaled step equals the float32 step clipped by hand.
    big = g * 10.0  # norm 0.5
    clipped, _ = step(big * CLIP / 0.5)
    scaled, norm = step(big * 2.0 ** 15, clip_norm=CLIP, initial_loss_scale=2.0 ** 15)
    np.testing.assert_allclose(norm, 0.5, rtol=1e-6)
    np.testing.assert_allclose(scaled, clipped, rtol=1e-4)
    assert np.max(np.abs(scaled)) > 1.5 * np.max(np.abs(unclipped))  # clipped, not to 0.05


def test_overflow_step_keeps_weights_and_moments_counts_the_step_and_halves_the_scale():
    w = keras.Variable(np.array([1.0, -2.0], np.float32), name="kernel")
    b = keras.Variable(np.array([0.5], np.float32), name="bias")
    optimizer = opt_lib.AdamWeightDecay(0.1, weight_decay=0.1, clip_norm=1.0,
                                        initial_loss_scale=8.0, loss_scale_growth_interval=3)
    optimizer.exclude_from_weight_decay(var_list=[b])
    optimizer.build([w, b])
    state = lambda: [v.numpy().copy() for v in [w, b, *optimizer.variables]]  # noqa: E731

    def apply(gw, gb):
        scale = float(optimizer.loss_scale.scale)  # the loss was scaled by it
        grads = [tf.constant(gw, tf.float32) * scale, tf.constant(gb, tf.float32) * scale]
        return float(optimizer.apply(grads, [w, b]))

    assert np.isfinite(apply([0.2, 0.1], [0.3]))
    moved = state()
    # Overflow in one element of one gradient: nothing else in the step may move either, not
    # even by weight decay (w is decayed).
    assert not np.isfinite(apply([np.inf, 0.1], [0.3]))
    after = state()
    names = ["w", "b"] + [v.name for v in optimizer.variables]
    changed = [n for n, a, m in zip(names, after, moved) if not np.array_equal(a, m)]
    assert changed == ["iteration", "loss_scale.dynamic_scale", "loss_scale.step_counter"]
    assert int(optimizer.iterations) == 2  # = apply calls, the loop's global step
    assert float(optimizer.loss_scale.scale) == 4.0 and int(optimizer.loss_scale.good_steps) == 0
    assert not np.isfinite(apply([0.2, np.nan], [0.3]))
    assert float(optimizer.loss_scale.scale) == 2.0 and int(optimizer.iterations) == 3

    # Growth: the 3rd finite step in a row doubles the scale.
    scales = []
    for _ in range(4):
        assert np.isfinite(apply([0.2, 0.1], [0.3]))
        scales.append((float(optimizer.loss_scale.scale), int(optimizer.loss_scale.good_steps)))
    assert scales == [(2.0, 1), (2.0, 2), (4.0, 0), (4.0, 1)]
    assert not np.array_equal(w.numpy(), after[0])
    assert int(optimizer.iterations) == 7


def test_loss_scaled_accumulation_step_compiles_with_xla():
    x, y = _batch()
    model, reference = _model("mixed_float16"), _model("mixed_float16")
    reference.set_weights(model.get_weights())
    optimizer = opt_lib.build_optimizer(_config(), 10, model, mixed_precision="mixed_float16")
    ref_optimizer = opt_lib.build_optimizer(_config(), 10, reference,
                                            mixed_precision="mixed_float16")
    variables = model.trainable_variables

    def grad_fn(micro, boost):
        with tf.GradientTape() as tape:
            loss = _loss(model, micro["x"], micro["y"]) * boost
            scaled = optimizer.scale_loss(loss)
        return tape.gradient(scaled, variables), {"loss": loss}

    @tf.function(jit_compile=True)
    def step(batch, boost):
        grads, _ = gradients.accumulate_gradients(lambda m: grad_fn(m, boost), batch, variables, 2)
        return gradients.apply_gradients(optimizer, grads, variables)

    batch = {"x": tf.constant(x), "y": tf.constant(y)}
    norm = step(batch, tf.constant(1.0))
    ref_norm = gradients.apply_gradients(ref_optimizer, _grads(reference, ref_optimizer, x, y),
                                         reference.trainable_variables)
    # Measured: norm 8e-5 relative, weights 2e-7 (the step moves them by up to 1e-3).
    np.testing.assert_allclose(float(norm), float(ref_norm), rtol=1e-3)
    np.testing.assert_allclose(_flat(variables), _flat(reference.trainable_variables),
                               rtol=0, atol=1e-5)
    # An overflowing step, compiled: skipped, counted, scale halved.
    before = _flat(variables)
    assert not np.isfinite(float(step(batch, tf.constant(np.inf))))
    np.testing.assert_array_equal(_flat(variables), before)
    assert int(optimizer.iterations) == 2 and float(optimizer.loss_scale.scale) == 2.0 ** 14


def test_debug_tiny_mixed_float16_skips_overflow_steps_and_counts_them(tokenizer,
                                                                       corpus_examples):
    config = load_config("debug_tiny", ["train.mixed_precision=mixed_float16"])
    model = build_pretrainer(config, tokenizer)
    optimizer = opt_lib.build_optimizer(config.optimizer, config.train.num_steps, model,
                                        mixed_precision="mixed_float16")
    # Keras' compile (auto_scale_loss=True) wraps the optimizer of a mixed_float16 model in its
    # own LossScaleOptimizer (a second scale), which apply_gradients refuses before it changes
    # anything; ElectraPretrainer.compile defaults to auto_scale_loss=False.
    model.compile(optimizer=optimizer, auto_scale_loss=True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    variables = model.trainable_variables
    with pytest.raises(TypeError, match="auto_scale_loss=False"):
        gradients.apply_gradients(model.optimizer, [tf.zeros_like(v) for v in variables],
                                  variables)
    model.compile(optimizer=optimizer)
    assert model.optimizer is optimizer
    assert model.generator.transformer_layers[0].query.compute_dtype == "float16"
    batch = {k: tf.constant(v) for k, v in corpus_examples(tokenizer, 8).items()}
    step = tf.function(model.train_step, autograph=False)
    norms = [float(step(batch)["gradient_norm"]) for _ in range(6)]
    skipped = sum(not np.isfinite(n) for n in norms)
    assert skipped >= 1  # the first steps at 2^15 overflow float16 (4 of them here, today)
    assert np.all(np.isfinite(norms[skipped:]))  # then the scale fits
    assert int(optimizer.iterations) == 6  # every call is a step, skipped or not
    assert float(optimizer.loss_scale.scale) == 2.0 ** (15 - skipped)
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


# ---------------------------------------------------------------------------------------------
# Two replicas (MirroredStrategy on two logical CPU devices, fresh process).

_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    # Logical devices must exist before TensorFlow initializes its runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_gradient_path import _batch, _config, _loss, _model
    from electra_tf.training import gradients
    from electra_tf.training import optimization as opt_lib

    x, y = _batch()

    def run(strategy, precision):
        with strategy.scope():
            model = _model(precision)
            optimizer = opt_lib.build_optimizer(_config(), 10, model, mixed_precision=precision)
        variables = model.trainable_variables
        replicas = strategy.num_replicas_in_sync

        def replica_step(xs, ys, boost):
            with tf.GradientTape() as tape:
                scaled = optimizer.scale_loss(_loss(model, xs, ys) * boost)
            return gradients.apply_gradients(optimizer, tape.gradient(scaled, variables),
                                             variables)

        @tf.function
        def step(boost):
            shard = lambda t: strategy.experimental_distribute_values_from_function(
                lambda ctx: t[ctx.replica_id_in_sync_group * 8 // replicas:
                              (ctx.replica_id_in_sync_group + 1) * 8 // replicas])
            return strategy.run(replica_step, (shard(tf.constant(x)), shard(tf.constant(y)),
                                               boost))

        norms = []
        boosts = [1.0, 1.0] + ([float("inf")] if optimizer.loss_scale else [])  # an overflow
        for boost in boosts:
            result = step(tf.constant(boost))
            norms.append([float(n) for n in strategy.experimental_local_results(result)])
        scale = optimizer.loss_scale and [float(v) for v in strategy.experimental_local_results(
            optimizer.loss_scale.scale.value)]
        return {"weights": [v.numpy().tolist() for v in variables], "norms": norms,
                "iterations": int(optimizer.iterations.numpy()), "scale": scale}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.get_strategy()
    results = {f"{name}/{precision}": run(strategy, precision)
               for precision in ("float32", "mixed_float16")
               for name, strategy in (("single", single), ("mirrored", mirrored))}
    print("RESULTS" + json.dumps(results))
""")


def test_two_replicas_equal_one_with_clipping_in_float32_and_mixed_float16(script_results):
    results = script_results(_MIRRORED_SCRIPT)
    # Steps move weights by up to ~1e-3; clipping each replica's part instead of the sum would
    # change that by ~1e-3. Measured: float32 2e-10 (the order of the batch sum), mixed_float16
    # 3e-7 (each replica's float16 partial sums round differently).
    for precision, atol in (("float32", 1e-6), ("mixed_float16", 1e-5)):
        one, two = results[f"single/{precision}"], results[f"mirrored/{precision}"]
        assert one["norms"][0][0] > 2 * 0.1  # clipping is active
        np.testing.assert_allclose(_flat(two["weights"]), _flat(one["weights"]), rtol=0,
                                   atol=atol, err_msg=precision)
        for step in range(2):  # the global pre-clipping norm, on every replica
            np.testing.assert_allclose(two["norms"][step], [one["norms"][step][0]] * 2,
                                       rtol=1e-5 if precision == "float32" else 1e-3)
    # mixed_float16's third step overflows: skipped on both replicas (the weights compared above
    # are those of step 2), counted, the scale halved on both.
    one, two = results["single/mixed_float16"], results["mirrored/mixed_float16"]
    assert not any(np.isfinite(n) for n in two["norms"][2] + one["norms"][2])
    assert one["iterations"] == two["iterations"] == 3
    assert results["single/mixed_float16"]["scale"] == [2.0 ** 14]
    assert results["mirrored/mixed_float16"]["scale"] == [2.0 ** 14] * 2
    assert results["mirrored/float32"]["scale"] is None
