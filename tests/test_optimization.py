"""Tests for electra_tf.training.optimization, .schedules and .gradients: hand-computed updates,
schedule values, weight-decay exclusions of a real debug_tiny encoder, layer-wise rates, loss
scaling, accumulation, and cross-replica clipping under a real MirroredStrategy on two logical
CPUs (in a subprocess)."""

import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_tf.config import OptimizerConfig
from electra_tf.config_io import apply_overrides, load_config
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.training import gradients, schedules
from electra_tf.training import optimization as opt_lib


def _small_model(seed=0):
    """Dense → LayerNorm → Dense(1): kernels, biases and LayerNorm weights, 27 parameters."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, name="hidden"),
        keras.layers.LayerNormalization(name="norm"),
        keras.layers.Dense(1, name="out"),
    ], name="small")
    return model


def _regression_batch(n=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 3).astype(np.float32), rng.randn(n, 1).astype(np.float32)


def _names(variables):
    return [v.path for v in variables]


# ---------------------------------------------------------------------------------------------
# Schedule.

def test_schedule_values_warmup_multiplies_linear_decay():
    # lr 1e-3, T = 100, W = 10: rate = 1e-3 · (1 − t/100) · min(1, t/10).
    schedule = schedules.WarmupPolynomialDecay(1e-3, decay_steps=100, warmup_steps=10)
    got = [float(schedule(t)) for t in (0, 5, 10, 50, 100, 150)]
    np.testing.assert_allclose(got, [0.0, 4.75e-4, 9.0e-4, 5.0e-4, 0.0, 0.0], atol=1e-10)


def test_schedule_power_end_rate_and_round_trip():
    schedule = schedules.WarmupPolynomialDecay(1e-3, decay_steps=100, warmup_steps=0,
                                             end_learning_rate=1e-4, power=2.0)
    # (1e-3 − 1e-4) · (1 − 0.5)² + 1e-4, no warmup factor.
    np.testing.assert_allclose(float(schedule(50)), 3.25e-4, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(0)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(500)), 1e-4, rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(schedule))))
    assert isinstance(restored, schedules.WarmupPolynomialDecay)
    assert restored.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="decay_steps=0"):
        schedules.WarmupPolynomialDecay(1e-3, decay_steps=0)


def test_warmup_fraction_overrides_warmup_steps():
    config = OptimizerConfig(warmup_steps=10000, warmup_fraction=0.1)
    assert schedules.warmup_steps(config, 300) == pytest.approx(30.0)
    assert schedules.warmup_steps(OptimizerConfig(warmup_steps=7), 300) == 7.0


# ---------------------------------------------------------------------------------------------
# Update rules.

def test_adamw_step_without_bias_correction_matches_reference_formula():
    w = keras.Variable(np.array([1.0, -2.0], np.float32), name="kernel")
    b = keras.Variable(np.array([0.5], np.float32), name="bias")
    optimizer = opt_lib.AdamWeightDecay(0.1, weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_list=[b])
    optimizer.apply([tf.constant([0.5, 0.1]), tf.constant([2.0])], [w, b])
    # m = 0.1 g, v = 0.001 g², u = m / (√v + 1e-6) + 0.01 w (kernel only), w -= 0.1 u.
    # kernel[0]: 0.05 / (0.0158114 + 1e-6) + 0.01 = 3.172078 → 1 − 0.3172078
    # kernel[1]: 0.01 / (0.0031623 + 1e-6) − 0.02 = 3.141278 → −2 − 0.3141278
    # bias:      0.2  / (0.0632456 + 1e-6)        = 3.162228 → 0.5 − 0.3162228
    np.testing.assert_allclose(w.numpy(), [0.6827922, -2.3141278], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [0.1837772], rtol=1e-5)


def test_adamw_bias_correction_two_steps():
    w0, g1, g2 = np.array([0.3, -0.7]), np.array([0.2, -0.4]), np.array([-0.1, 0.3])
    w = keras.Variable(w0.astype(np.float32), name="kernel")
    optimizer = opt_lib.AdamWeightDecay(0.01, weight_decay=0.1, bias_correction=True)
    for g in (g1, g2):
        optimizer.apply([tf.constant(g, tf.float32)], [w])
    expected, m, v = w0.copy(), 0.0, 0.0
    for t, g in enumerate((g1, g2), start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        u = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-6) + 0.1 * expected
        expected = expected - 0.01 * u
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


def test_lamb_trust_ratio_only_on_decayed_variables():
    w = keras.Variable(np.array([3.0, 4.0], np.float32), name="kernel")
    b = keras.Variable(np.array([1.0, 0.0], np.float32), name="bias")
    optimizer = opt_lib.Lamb(0.1, weight_decay=0.01, bias_correction=True)
    optimizer.exclude_from_weight_decay(var_list=[b])
    optimizer.apply([tf.constant([1.0, 1.0]), tf.constant([2.0, -2.0])], [w, b])
    # Step 1 with bias correction: m̂ = g, v̂ = g², so u = g / (|g| + 1e-6) (+ 0.01 w).
    u = np.array([1.0, 1.0]) / (1.0 + 1e-6) + 0.01 * np.array([3.0, 4.0])
    ratio = 5.0 / np.linalg.norm(u)  # ‖w‖ = 5
    np.testing.assert_allclose(w.numpy(), [3.0, 4.0] - 0.1 * ratio * u, rtol=1e-6)
    # The bias is excluded: no decay, no trust ratio (float32 1 − β2 is off by 1e-5 relative).
    np.testing.assert_allclose(b.numpy(), [1.0 - 0.1 / (1 + 5e-7), 0.1 / (1 + 5e-7)], rtol=1e-5)


def test_optimizer_config_round_trip_and_refused_keras_options():
    optimizer = opt_lib.Lamb(schedules.WarmupPolynomialDecay(1e-3, 10, 2), weight_decay=0.01,
                             bias_correction=True, clip_norm=1.0,
                             lr_multipliers={"a/kernel": 0.5}, initial_loss_scale=8.0,
                             loss_scale_growth_interval=3)
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer))))
    assert type(restored) is opt_lib.Lamb
    config = restored.get_config()
    assert config["bias_correction"] is True and config["clip_norm"] == 1.0
    assert config["global_clipnorm"] is None  # clipped by apply, never again by Keras
    assert (config["initial_loss_scale"], config["loss_scale_growth_interval"]) == (8.0, 3)
    assert "lr_multipliers" not in config  # bound to variables: build_optimizer sets it
    assert config["learning_rate"]["config"]["warmup_steps"] == 2.0
    with pytest.raises(ValueError, match="clipnorm"):
        opt_lib.AdamWeightDecay(1e-3, clipnorm=1.0)
    with pytest.raises(ValueError, match="global_clipnorm=1.0: use clip_norm"):
        opt_lib.AdamWeightDecay(1e-3, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="loss_scale_factor"):
        opt_lib.AdamWeightDecay(1e-3, loss_scale_factor=128.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        opt_lib.AdamWeightDecay(1e-3, gradient_accumulation_steps=2)


# ---------------------------------------------------------------------------------------------
# Weight-decay exclusions.

def test_decay_exclusions_by_identity_where_keras_name_patterns_miss_gamma():
    model = _small_model()
    excluded = opt_lib.decay_exclusions(model)
    assert _names(excluded) == ["small/hidden/bias", "small/norm/gamma", "small/norm/beta",
                                "small/out/bias"]
    before = {v.path: v.numpy() for v in model.trainable_variables}
    zeros = [tf.zeros_like(v) for v in model.trainable_variables]

    # Zero gradients: Adam's direction is 0, so only weight decay moves a variable.
    optimizer = opt_lib.AdamWeightDecay(0.5, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_list=excluded)
    optimizer.apply(zeros, model.trainable_variables)
    decayed = [v.path for v in model.trainable_variables
               if not np.array_equal(v.numpy(), before[v.path])]
    assert decayed == ["small/hidden/kernel", "small/out/kernel"]
    np.testing.assert_allclose(model.layers[0].kernel.numpy(),
                               before["small/hidden/kernel"] * (1 - 0.5 * 0.1), rtol=1e-6)

    # Installed Keras: the reference's patterns match short names, so gamma would be decayed.
    model = _small_model()
    gamma = model.layers[1].gamma
    gamma.assign(np.full((4,), 2.0, np.float32))
    stock = keras.optimizers.AdamW(0.5, weight_decay=0.1)
    stock.exclude_from_weight_decay(var_names=["LayerNorm", "layer_norm", "bias"])
    stock.apply([tf.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    np.testing.assert_allclose(gamma.numpy(), 2.0 * (1 - 0.5 * 0.1), rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_encoder():
    encoder = ElectraEncoder(load_config("debug_tiny").model, seed=1)
    encoder.build()
    return encoder


def test_decayed_variables_of_debug_tiny_encoder(tiny_encoder):
    excluded = {id(v) for v in opt_lib.decay_exclusions(tiny_encoder)}

    def decayed(variables):
        return [v.name for v in variables if id(v) not in excluded]

    # Listed per structural group (short names), so layer renames do not matter but any change
    # in *what* is decayed does: embedding tables and kernels only.
    assert decayed(tiny_encoder.embeddings.trainable_variables) == [
        "word_embeddings", "position_embeddings", "segment_embeddings"]
    assert decayed(tiny_encoder.embeddings_project.trainable_variables) == ["kernel"]
    for layer in tiny_encoder.transformer_layers:  # Q, K, V, attention output, FFN in and out
        assert decayed(layer.trainable_variables) == ["kernel"] * 6, layer.name
    # The rest: 1 + 2 × 2 LayerNorms (gamma, beta) and 1 + 2 × 6 biases.
    names = [v.name for v in opt_lib.decay_exclusions(tiny_encoder)]
    assert sorted(names) == sorted(["gamma", "beta"] * 5 + ["bias"] * 13)
    assert len(tiny_encoder.trainable_variables) == 16 + 23
    with pytest.raises(TypeError, match="LayerNorm weights are found through their layers"):
        opt_lib.decay_exclusions(tiny_encoder.trainable_variables)


# ---------------------------------------------------------------------------------------------
# Learning-rate multipliers.

def test_layerwise_lr_multipliers_reference_depths(tiny_encoder):
    head = keras.layers.Dense(3, name="classifier")
    head.build((None, 32))
    multipliers = opt_lib.layerwise_lr_multipliers(tiny_encoder, head.trainable_variables, 0.8)
    # L = 2: head d⁰, top layer (1) d², bottom layer (0) d³ = d^(L+1), embeddings d^(L+2).
    exponents = {path: round(np.log(m) / np.log(0.8), 6) for path, m in multipliers.items()}
    assert exponents["classifier/kernel"] == exponents["classifier/bias"] == 0
    assert {exponents[p] for p in multipliers if "/layer_1/" in p} == {2}
    assert {exponents[p] for p in multipliers if "/layer_0/" in p} == {3}
    assert {exponents[p] for p in multipliers if "/embeddings" in p} == {4}
    assert "electra_encoder/embeddings_project/kernel" in multipliers
    assert len(multipliers) == len(tiny_encoder.trainable_variables) + 2


def test_lr_multipliers_scale_the_update_and_are_required_for_every_variable():
    a = keras.Variable(np.array([1.0, 1.0], np.float32), name="a")
    b = keras.Variable(np.array([1.0, 1.0], np.float32), name="b")
    optimizer = opt_lib.AdamWeightDecay(0.1, weight_decay=0.01,
                                        lr_multipliers={a.path: 1.0, b.path: 0.25})
    grad = tf.constant([0.3, -0.3])
    optimizer.apply([grad, grad], [a, b])
    # The whole update (Adam direction and weight decay) scales with the multiplier.
    np.testing.assert_allclose(1.0 - b.numpy(), 0.25 * (1.0 - a.numpy()), rtol=1e-6)

    c = keras.Variable(np.zeros(2, np.float32), name="c")
    with pytest.raises(ValueError, match=f"no entry for 1 variable.*{c.path}"):
        opt_lib.AdamWeightDecay(0.1, lr_multipliers={a.path: 1.0}).build([a, c])


# ---------------------------------------------------------------------------------------------
# build_optimizer, apply_gradients, loss scaling, accumulation.

def _config(**overrides):
    # epsilon 1: Adam's step then depends on the gradient's size, so clipping is visible.
    values = dict(learning_rate=0.1, warmup_steps=0, epsilon=1.0, clip_norm=0.1,
                  weight_decay=0.01)
    values.update(overrides)
    return OptimizerConfig(**values)


def _loss_grads(model, x, y, scale=None):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x) - y)) / 8.0  # normalized by the global batch
        scaled = scale(loss) if scale else loss
    return tape.gradient(scaled, model.trainable_variables)


def test_build_optimizer_from_config():
    model = _small_model()
    config = apply_overrides(load_config("debug_tiny"),
                             ["optimizer.name=lamb", "optimizer.warmup_fraction=0.1"])
    optimizer = opt_lib.build_optimizer(config.optimizer, 40, model)
    assert type(optimizer) is opt_lib.Lamb and optimizer.built
    assert optimizer.clip_norm == 1.0 and optimizer.weight_decay == 0.01
    assert optimizer.loss_scale is None and optimizer.scale_loss(3.0) == 3.0
    assert optimizer._learning_rate.warmup_steps == pytest.approx(4.0)
    assert len(optimizer.variables) == 1 + 2 * len(model.trainable_variables)  # iterations, m, v
    # mixed_float16: the same single optimizer, with its own loss scale (two more variables).
    scaled = opt_lib.build_optimizer(config.optimizer, 40, model, mixed_precision="mixed_float16")
    assert type(scaled) is opt_lib.Lamb and float(scaled.loss_scale.scale) == 2.0 ** 15
    assert len(scaled.variables) == 3 + 2 * len(model.trainable_variables)
    bf16 = opt_lib.build_optimizer(config.optimizer, 40, model, mixed_precision="mixed_bfloat16")
    assert type(bf16) is opt_lib.Lamb and bf16.loss_scale is None
    with pytest.raises(ValueError, match="mixed_precision='float16' is not one of"):
        opt_lib.build_optimizer(config.optimizer, 40, model, mixed_precision="float16")
    with pytest.raises(ValueError, match="no trainable variables"):
        opt_lib.build_optimizer(config.optimizer, 40, keras.Sequential([keras.layers.Dense(2)]))


def test_apply_gradients_clips_global_norm_and_returns_it():
    x, y = _regression_batch()
    model, reference = _small_model(), _small_model()
    grads = _loss_grads(model, x, y)
    expected_norm = np.sqrt(sum(np.sum(np.square(g)) for g in grads))
    assert expected_norm > 0.1  # clipping is active

    optimizer = opt_lib.build_optimizer(_config(), 10, model)
    norm = gradients.apply_gradients(optimizer, grads, model.trainable_variables)
    np.testing.assert_allclose(float(norm), expected_norm, rtol=1e-6)

    # The same step from gradients clipped by hand, with clipping off.
    unclipped = opt_lib.build_optimizer(_config(clip_norm=0.0), 10, reference)
    unclipped.apply([g * (0.1 / expected_norm) for g in grads], reference.trainable_variables)
    for v, r in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(v.numpy(), r.numpy(), rtol=1e-5, atol=1e-7)


def test_loss_scaling_applies_the_same_step_and_skips_non_finite():
    x, y = _regression_batch()
    model, reference = _small_model(), _small_model()
    optimizer = opt_lib.build_optimizer(_config(), 10, model, mixed_precision="mixed_float16")
    plain = opt_lib.build_optimizer(_config(), 10, reference)
    scale = float(optimizer.loss_scale.scale)
    assert scale == 2.0 ** 15

    grads = _loss_grads(model, x, y, scale=optimizer.scale_loss)
    norm = gradients.apply_gradients(optimizer, grads, model.trainable_variables)
    ref_norm = gradients.apply_gradients(plain, _loss_grads(reference, x, y),
                                       reference.trainable_variables)
    np.testing.assert_allclose(float(norm), float(ref_norm), rtol=1e-5)
    for v, r in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(v.numpy(), r.numpy(), rtol=1e-5, atol=1e-7)
    assert int(optimizer.iterations) == 1

    # An overflowing step changes no weight but halves the scale; it counts as a step (the
    # loop's global step is optimizer.iterations).
    before = [v.numpy() for v in model.trainable_variables]
    bad = [tf.fill(v.shape, np.inf) for v in model.trainable_variables]
    norm = gradients.apply_gradients(optimizer, bad, model.trainable_variables)
    assert not np.isfinite(float(norm))
    assert float(optimizer.loss_scale.scale) == scale / 2 and int(optimizer.iterations) == 2
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_rebuilt_optimizer_resumes_from_checkpoint(tmp_path):
    x, y = _regression_batch()
    model = _small_model()
    optimizer = opt_lib.build_optimizer(_config(bias_correction=True), 10, model)
    gradients.apply_gradients(optimizer, _loss_grads(model, x, y), model.trainable_variables)
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(tmp_path / "ckpt"))

    restored = _small_model(seed=5)
    resumed = opt_lib.build_optimizer(_config(bias_correction=True), 10, restored)
    tf.train.Checkpoint(model=restored, optimizer=resumed).read(path).assert_consumed()
    assert int(resumed.iterations) == 1
    for m, o in ((model, optimizer), (restored, resumed)):
        gradients.apply_gradients(o, _loss_grads(m, x, y), m.trainable_variables)
    for v, r in zip(model.trainable_variables, restored.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), r.numpy())


def test_accumulating_two_micro_batches_of_4_equals_one_batch_of_8_with_xla():
    x, y = _regression_batch()
    model = _small_model()
    variables = model.trainable_variables
    full = _loss_grads(model, x, y)

    def grad_fn(micro):
        xs, ys = micro["x"], micro["y"]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(xs) - ys)) / 8.0
        return tape.gradient(loss, variables), {"loss": loss, "count": tf.shape(xs)[0]}

    batch = {"x": tf.constant(x), "y": tf.constant(y)}
    grads, outputs = gradients.accumulate_gradients(grad_fn, batch, variables, 2)
    for g, f in zip(grads, full):
        np.testing.assert_allclose(g.numpy(), f.numpy(), rtol=1e-5, atol=1e-7)
    assert int(outputs["count"]) == 8
    np.testing.assert_allclose(float(outputs["loss"]),
                               np.sum(np.square(model(x).numpy() - y)) / 8.0, rtol=1e-5)
    with pytest.raises(ValueError, match="batch dimension 8 is not divisible by "
                                         "accumulation_steps=3"):
        gradients.accumulate_gradients(grad_fn, batch, variables, 3)

    # One compiled (XLA) step: accumulate 2 × 4, clip, apply == one eager step on 8.
    reference = _small_model()
    ref_optimizer = opt_lib.build_optimizer(_config(), 10, reference)
    ref_norm = gradients.apply_gradients(ref_optimizer, _loss_grads(reference, x, y),
                                       reference.trainable_variables)
    optimizer = opt_lib.build_optimizer(_config(), 10, model)

    @tf.function(jit_compile=True)
    def step(batch):
        grads, _ = gradients.accumulate_gradients(grad_fn, batch, variables, 2)
        return gradients.apply_gradients(optimizer, grads, variables)

    np.testing.assert_allclose(float(step(batch)), float(ref_norm), rtol=1e-5)
    for v, r in zip(variables, reference.trainable_variables):
        np.testing.assert_allclose(v.numpy(), r.numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Cross-replica clipping under MirroredStrategy (two logical CPU devices, fresh process).

_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    # Logical devices must exist before TensorFlow initializes its runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_optimization import _config, _loss_grads, _regression_batch, _small_model
    from electra_tf.training import gradients
    from electra_tf.training import optimization as opt_lib

    x, y = _regression_batch()

    def run(strategy, make_optimizer, how, steps=2):
        with strategy.scope():
            model = _small_model()
            optimizer = make_optimizer(model)
        variables = model.trainable_variables
        replicas = strategy.num_replicas_in_sync

        def replica_step(xs, ys):
            scale = getattr(optimizer, "scale_loss", None)
            grads = _loss_grads(model, xs, ys, scale=scale)
            if how == "helper":
                return gradients.apply_gradients(optimizer, grads, variables)
            optimizer.apply(grads, variables)  # the model.fit path
            return tf.constant(0.0)

        @tf.function
        def step():
            shard = lambda t: strategy.experimental_distribute_values_from_function(
                lambda ctx: t[ctx.replica_id_in_sync_group * 8 // replicas:
                              (ctx.replica_id_in_sync_group + 1) * 8 // replicas])
            return strategy.run(replica_step, (shard(tf.constant(x)), shard(tf.constant(y))))

        norms = [[float(n) for n in strategy.experimental_local_results(step())]
                 for _ in range(steps)]
        return [v.numpy().tolist() for v in variables], norms

    ours = lambda model: opt_lib.build_optimizer(_config(), 10, model)
    scaled = lambda model: opt_lib.build_optimizer(_config(), 10, model,
                                                   mixed_precision="mixed_float16")

    def stock(model):
        optimizer = keras.optimizers.AdamW(0.1, weight_decay=0.0, epsilon=1.0,
                                           global_clipnorm=0.1)
        optimizer.build(model.trainable_variables)  # as build_optimizer: outside tf.function
        return optimizer

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.get_strategy()
    results = {
        "single": run(single, ours, "helper"),
        "mirrored_helper": run(mirrored, ours, "helper"),
        "mirrored_apply": run(mirrored, ours, "apply"),
        "mirrored_loss_scale": run(mirrored, scaled, "helper"),
        "stock_single": run(single, stock, "apply"),
        "stock_mirrored": run(mirrored, stock, "apply"),
    }
    print("RESULTS" + json.dumps(results))
""")


def test_mirrored_two_replicas_match_single_device_with_clipping(script_results):
    results = script_results(_MIRRORED_SCRIPT)
    weights, norms = results["single"]
    flat = lambda ws: np.concatenate([np.ravel(w) for w in ws])
    assert norms[0][0] > 0.1  # clipping is active on the first step

    for name in ("mirrored_helper", "mirrored_apply", "mirrored_loss_scale"):
        np.testing.assert_allclose(flat(results[name][0]), flat(weights), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # The helper returns the global pre-clipping norm on every replica.
    for name in ("mirrored_helper", "mirrored_loss_scale"):
        np.testing.assert_allclose(results[name][1], [[n[0], n[0]] for n in norms], rtol=1e-5)

    # Installed Keras clips each replica's partial gradient before summing: a different step,
    # off by far more than the tolerance above (the day this fails, Keras changed its order).
    stock_single, stock_mirrored = flat(results["stock_single"][0]), flat(
        results["stock_mirrored"][0])
    assert np.max(np.abs(stock_single - stock_mirrored)) > 1e-4
