"""ElectraPretrainer: golden step-0 numbers, learning on real text, accumulation, the mlm
objective, Keras fit, dropout-state checkpoints and one-device vs MirroredStrategy equality."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from electra_tf.config_io import load_config
from electra_tf.corpus import corpus_path, read_documents
from electra_tf.objective.pretrainer import ELECTRA_METRICS, MLM_METRICS, build_pretrainer
from electra_tf.training.optimization import build_optimizer


@pytest.fixture(scope="module")
def batches(tokenizer):
    """Six batches of 8 real sequences (Jane Austen paragraphs), seq_length 32."""
    lines = [line for doc in read_documents(corpus_path("austen")) for line in doc
             if len(line) > 200][:48]
    encoded = tokenizer.encode(tf.constant(lines), seq_length=32)
    return [{k: v[i:i + 8] for k, v in encoded.items()} for i in range(0, 48, 8)]


def _pretrainer(tokenizer, *overrides):
    config = load_config("debug_tiny", overrides)
    model = build_pretrainer(config, tokenizer)
    model.compile(optimizer=build_optimizer(config.optimizer, config.train.num_steps, model))
    return model


def _floats(metrics):
    return {k: float(v) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def run(tokenizer, batches, tmp_path_factory):
    """One model, one traced step: 30 steps on five batches (a checkpoint after step 10, then
    the checkpoint restored and steps 11-12 replayed at the end)."""
    model = _pretrainer(tokenizer, "optimizer.learning_rate=3e-3", "optimizer.warmup_steps=3",
                        "train.num_steps=200")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     seed_generators=model.seed_generator_variables())
    step = tf.function(model.train_step)
    history, path = [], None
    for i in range(30):
        if i == 10:
            path = checkpoint.save(str(tmp_path_factory.mktemp("ckpt") / "ckpt"))
        history.append(_floats(step(batches[i % 5])))
    checkpoint.restore(path).assert_consumed()
    replay = [_floats(step(batches[i % 5])) for i in (10, 11)]
    return {"model": model, "history": history, "replay": replay}


def test_step_zero_golden_numbers(run):
    metrics = run["history"][0]
    assert sorted(metrics) == sorted(ELECTRA_METRICS + ("gradient_norm",))
    # Plausible before any learning: MLM ≈ ln(30522) = 10.33, RTD ≈ ln 2 = 0.69.
    assert abs(metrics["generator_loss"] - math.log(30522)) < 0.05
    assert abs(metrics["discriminator_loss"] - math.log(2)) < 0.05
    assert metrics["loss"] == pytest.approx(
        metrics["generator_loss"] + 50 * metrics["discriminator_loss"], rel=1e-6)
    # An untrained generator almost never reproduces the original token.
    assert metrics["replaced_fraction"] == 1.0
    # Regenerated when seed keys became injective and uniforms open at 1 (masks and samples
    # changed); a change here means the step's numbers changed.
    golden = {"loss": 44.713669, "generator_loss": 10.323595, "discriminator_loss": 0.687801,
              "discriminator_accuracy": 0.6328125, "discriminator_recall": 0.375,
              "gradient_norm": 60.488880}
    for key, value in golden.items():
        assert metrics[key] == pytest.approx(value, rel=2e-4), key


def test_losses_decrease_on_real_text(run, batches):
    first, last = run["history"][:5], run["history"][-5:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    assert mean(last, "generator_loss") < mean(first, "generator_loss") - 2.0
    assert mean(last, "discriminator_loss") < mean(first, "discriminator_loss") - 0.15
    assert mean(last, "loss") < 0.75 * mean(first, "loss")
    held_out = _floats(run["model"].test_step(batches[5]))
    assert held_out["generator_loss"] < math.log(30522) - 0.5


def test_uniform_replacements_control_leaves_the_baseline(tokenizer, batches):
    # The reference's uniform_generator control: replacements drawn uniformly from the
    # vocabulary. A working discriminator path ranks replaced tokens above originals within a
    # few dozen steps (here 40 steps of debug_tiny on five batches of real text).
    model = _pretrainer(tokenizer, "objective.replacements=uniform",
                        "optimizer.learning_rate=3e-3", "optimizer.warmup_steps=3",
                        "train.num_steps=200")
    step = tf.function(model.train_step)
    history = [_floats(step(batches[i % 5])) for i in range(40)]
    assert history[0]["discriminator_auc"] == pytest.approx(0.5, abs=0.15)
    assert np.mean([h["discriminator_auc"] for h in history[-5:]]) > 0.85
    assert min(h["replaced_fraction"] for h in history) > 0.99  # 1 in 30,522 repeats
    # The generator still trains on its MLM loss, though it chooses no replacement.
    assert history[-1]["generator_loss"] < history[0]["generator_loss"] - 2.0
    held_out = _floats(model.test_step(batches[5]))
    assert held_out["discriminator_auc"] > 0.8
    assert 0.0 < held_out["representation_cosine"] < 0.9


def test_seed_generator_states_make_a_restored_run_repeat_exactly(run):
    states = run["model"].seed_generator_variables()
    assert len(states) == 1 + 3 * 2 + 3 * 2  # embeddings + 3 dropouts × 2 layers × 2 encoders
    # Restored to 10 steps (saved before step 10), then 2 replayed steps; the shared
    # embeddings' dropout runs twice per step (generator and discriminator).
    calls = {path.split("/")[1]: int(v.numpy()[1]) for path, v in states.items()}
    assert calls == {"embeddings": 24, "generator": 12, "discriminator": 12}
    assert run["replay"] == run["history"][10:12]


def test_mlm_objective_under_keras_fit(tokenizer, batches):
    model = _pretrainer(tokenizer, "objective.objective=mlm")
    assert model.discriminator is None and model.rtd_head is None
    assert model.backbone is model.generator
    assert model.generator.model_config.hidden_size == 32
    data = tf.data.Dataset.from_tensor_slices(
        {k: tf.concat([b[k] for b in batches[:2]], 0) for k in batches[0]}).batch(8)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False).history
    assert set(history) == set(MLM_METRICS + ("gradient_norm",))
    assert int(model.optimizer.iterations) == 4
    assert history["loss"] == pytest.approx(history["generator_loss"])


def test_mixed_bfloat16_losses_stay_float32(tokenizer, batches):
    config = load_config("debug_tiny", ["train.mixed_precision=mixed_bfloat16"])
    model = build_pretrainer(config, tokenizer)
    assert model.generator.transformer_layers[0].query.compute_dtype == "bfloat16"
    assert model.embeddings.word_embeddings.dtype == "float32"
    metrics = model.test_step(batches[0])
    assert all(v.dtype == tf.float32 for v in metrics.values())
    assert abs(float(metrics["generator_loss"]) - math.log(30522)) < 0.1
    assert abs(float(metrics["discriminator_loss"]) - math.log(2)) < 0.1


# Runs in a fresh process: logical CPU devices must be configured before TF initialises.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    # Graph rewrites cost seconds per trace here and change no value that is compared.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    import numpy as np
    from electra_tf.config_io import load_config
    from electra_tf.models.layers import SeededDropout
    from electra_tf.objective.pretrainer import build_pretrainer
    from electra_tf.training.optimization import build_optimizer

    small = ["model.dropout_rate=0.0", "model.attention_dropout_rate=0.0", "model.num_layers=1"]
    special = {"[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(8, 32)).astype(np.int32)
    lengths = [32, 20, 9, 32, 14, 27, 5, 32]
    mask = (np.arange(32)[None] < np.array(lengths)[:, None]).astype(np.int32)
    ids[:, 0] = 101
    ids[np.arange(8), np.array(lengths) - 1] = 102
    batch = {"token_ids": tf.constant(ids * mask), "segment_ids": tf.zeros([8, 32], tf.int32),
             "padding_mask": tf.constant(mask)}

    def run(strategy, accumulation_steps=1):
        config = load_config("debug_tiny", small + [
            f"train.accumulation_steps={accumulation_steps}"])
        with strategy.scope():
            model = build_pretrainer(config, special)
            model.compile(optimizer=build_optimizer(config.optimizer, 20, model))
        n = strategy.num_replicas_in_sync

        @tf.function
        def step():
            # Contiguous split, no example_index: train_step derives it (replica · 8/n + i).
            local = strategy.experimental_distribute_values_from_function(
                lambda ctx: {k: v[ctx.replica_id_in_sync_group * 8 // n:
                                  (ctx.replica_id_in_sync_group + 1) * 8 // n]
                             for k, v in batch.items()})
            return strategy.run(model.train_step, (local,))

        history = []
        for _ in range(3):
            out = step()
            values = {k: strategy.experimental_local_results(v) for k, v in out.items()}
            replicas = [{k: float(v[r]) for k, v in values.items()} for r in range(n)]
            assert all(r == replicas[0] for r in replicas), replicas
            history.append(replicas[0])
        return history, model.get_weights()

    single, single_w = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored, mirrored_w = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    accumulated, accumulated_w = run(tf.distribute.OneDeviceStrategy("/cpu:0"), 2)

    # Dropout: one mirrored seed state, but the replica id is mixed into the key.
    x = tf.ones([2, 64])
    single_drop = SeededDropout(0.5, seed=3)(x, training=True).numpy()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = SeededDropout(0.5, seed=3)
        layer.build()
    per_replica = strategy.experimental_local_results(
        strategy.run(tf.function(lambda: layer(x, training=True))))
    print(json.dumps({
        "single": single, "mirrored": mirrored, "accumulated": accumulated,
        "weight_difference": {  # largest |w - w_single| / (|w_single| + 1e-3) over all weights
            name: max(float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3)))
                      for a, b in zip(single_w, weights))
            for name, weights in (("mirrored", mirrored_w), ("accumulated", accumulated_w))},
        "replica0_equals_single": bool(np.array_equal(per_replica[0].numpy(), single_drop)),
        "replicas_differ": not np.array_equal(per_replica[0].numpy(), per_replica[1].numpy()),
    }))
""")


def test_mirrored_and_accumulated_equal_one_device():
    """Global batch 8, dropout 0, three steps: one device vs MirroredStrategy on two logical
    CPUs vs one device with accumulation_steps=2 give the same metrics and weights."""
    result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Learning rate 0 at step 0 (warmup), so steps 1-2 moved the weights: compare them.
    assert out["single"][2]["loss"] != out["single"][0]["loss"]
    for other in ("mirrored", "accumulated"):
        for single, metrics in zip(out["single"], out[other]):
            assert single.keys() == metrics.keys()
            for key in single:
                assert metrics[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), (other, key)
        assert out["weight_difference"][other] < 1e-4, other
    assert out["replica0_equals_single"] and out["replicas_differ"]
