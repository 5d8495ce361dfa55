"""Accelerator paths proven on the CPU: the whole train step under XLA, mixed precision end to
end, every step counted under float16 loss scaling (kill -9 resume across a skipped step), and
pre-training with data and model_dir on another file system (``ram://`` standing in for
``gs://``). docs/accelerators.md says what these tests cover and what they cannot."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import config_io
from electra_tf import finetune as finetune_cli
from electra_tf.objective import masking, sampling
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.training import distribute, loop, progress
from electra_tf.training.optimization import build_optimizer

# ---------------------------------------------------------------------------------------------
# Whole-step XLA (train.jit_compile).

XLA_OVERRIDES = ("model.num_layers=1", "train.batch_size=4", "data.seq_length=16",
                 "train.num_steps=20")
# A shape with a bounded (f32[<=4,16]) or unknown (f32[?,16]) dimension, as HLO text prints it.
DYNAMIC_SHAPE = re.compile(r"\b[a-z]+[0-9]*\[[^\]]*[<?][^\]]*\]")
TIGHT = 1e-5  # relative; XLA fuses and reorders float arithmetic (2e-7 seen here)
AFTER_A_FLIP = 5e-2  # relative, for the steps after a near-tie flipped a sampled token


def _compiled_pretrainer(config, tokenizer):
    model = build_pretrainer(config, tokenizer)
    model.compile(optimizer=build_optimizer(config.optimizer, config.train.num_steps, model))
    return model


def test_dynamic_shape_pattern_finds_what_xla_prints():
    # Without this control, an HLO printer change could make the static-shape check vacuous.
    masked_sum = tf.function(lambda x: tf.reduce_sum(tf.boolean_mask(x, x > 0)),
                             jit_compile=True)
    hlo = masked_sum.experimental_get_compiler_ir(tf.constant([1.0, -2.0, 3.0]))(stage="hlo")
    assert "f32[<=3]" in DYNAMIC_SHAPE.findall(hlo)


def test_whole_train_step_compiles_with_static_shapes_and_tracks_the_plain_step(
        tokenizer, corpus_examples):
    """20 steps of the same model with and without XLA, from the same weights and batches.

    Masks, dropout and Gumbel noise come from integer hashing and are the same under XLA
    (next test); the float arithmetic differs in rounding. A sampled token can flip only at a
    near-tie of the two best perturbed logits (within ~1e-6: rare, about 1e-6 per sample). Such
    a flip changes the discriminator's input at that step and nothing else, so the first step
    that differs must still agree on the generator loss (computed before sampling); later
    steps then start from slightly different weights and agree within ``AFTER_A_FLIP``.
    """
    config = config_io.load_config("debug_tiny", XLA_OVERRIDES)
    examples = corpus_examples(tokenizer, 80, seq_length=16)
    batches = [{k: v[i:i + 4] for k, v in examples.items()} for i in range(0, 80, 4)]
    plain, xla = (_compiled_pretrainer(config, tokenizer) for _ in range(2))
    for a, b in zip(plain.weights, xla.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain_step = tf.function(plain.train_step, autograph=False)
    xla_step = tf.function(xla.train_step, jit_compile=True, autograph=False)
    history = {name: [{k: float(v) for k, v in step(batch).items()} for batch in batches]
               for name, step in (("plain", plain_step), ("xla", xla_step))}

    hlo = xla_step.experimental_get_compiler_ir(batches[0])(stage="hlo")
    assert "f32[4,16,32]" in hlo  # [batch, seq, hidden]: the shapes are there to be checked
    assert DYNAMIC_SHAPE.findall(hlo) == []

    keys = ("loss", "generator_loss", "discriminator_loss")
    close = lambda a, b, key, tol: abs(a[key] - b[key]) <= tol * abs(a[key])  # noqa: E731
    pairs = list(zip(history["plain"], history["xla"]))
    assert all(math.isfinite(m["loss"]) for pair in pairs for m in pair)
    first = next((i for i, (a, b) in enumerate(pairs)
                  if not all(close(a, b, k, TIGHT) for k in keys)), None)
    if first is not None:
        a, b = pairs[first]
        assert close(a, b, "generator_loss", TIGHT), (
            f"step {first + 1}: the generator loss differs under XLA: {a} vs {b}")
        for i, (a, b) in enumerate(pairs[first:], first + 1):
            assert all(close(a, b, k, AFTER_A_FLIP) for k in keys), f"step {i}: {a} vs {b}"


def test_masks_and_gumbel_noise_are_the_same_under_xla(tokenizer, corpus_examples):
    examples = corpus_examples(tokenizer, 8)
    seeds = sampling.example_seeds(1234, sampling.MASKING_STREAM, tf.constant(7, tf.int64),
                                   tf.range(8))

    def mask(token_ids, padding_mask, seeds):
        return masking.mask_tokens(
            token_ids, padding_mask, seeds, max_predictions=5, mask_prob=0.15,
            mask_token_rate=0.8, random_token_rate=0.1, mask_id=tokenizer.mask_id,
            vocab_size=tokenizer.vocab_size,
            excluded_ids=(tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id))

    args = (tf.constant(examples["token_ids"]), tf.constant(examples["padding_mask"]), seeds)
    eager, compiled = mask(*args), tf.function(mask, jit_compile=True)(*args)
    assert int(tf.reduce_sum(eager.weights)) > 8  # several predictions per example
    for name, a, b in zip(eager._fields, eager, compiled):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)

    # The uniforms behind the Gumbel noise are integer hashing: bit-identical. The noise
    # -log(-log u) goes through each compiler's own log (1-ulp differences); the samples, an
    # argmax over the vocabulary, are the same.
    shape = [5, tokenizer.vocab_size]
    uniforms = [fn(seeds, shape).numpy()
                for fn in (sampling.example_uniforms,
                           tf.function(sampling.example_uniforms, jit_compile=True))]
    np.testing.assert_array_equal(uniforms[0].view(np.uint32), uniforms[1].view(np.uint32))
    noise = [-np.log(-np.log(u.astype(np.float64))) for u in uniforms]
    gumbel = lambda s: -tf.math.log(-tf.math.log(sampling.example_uniforms(s, shape)))  # noqa: E731
    np.testing.assert_allclose(gumbel(seeds).numpy(), noise[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf.function(gumbel, jit_compile=True)(seeds).numpy(), noise[0],
                               rtol=1e-5, atol=1e-6)
    logits = 3 * tf.random.stateless_normal([8] + shape, seed=[1, 2])
    samples = [fn(logits, seeds).numpy() for fn in (
        sampling.gumbel_max_sample, tf.function(sampling.gumbel_max_sample, jit_compile=True))]
    np.testing.assert_array_equal(samples[0], samples[1])


# ---------------------------------------------------------------------------------------------
# Mixed precision and the global step, through the training loop.

# debug_tiny's first float16 steps overflow (loss scale 2^15 → 2^11): steps 1-4 are skipped.
# Checkpoints every 2 steps, so a resume from ckpt-2 crosses skipped steps.
MP_OVERRIDES = ("model.num_layers=1", "train.num_steps=24", "train.checkpoint_every=2",
                "train.log_every=4")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def mp_config(precision):
    return config_io.load_config("debug_tiny", MP_OVERRIDES
                                 + (f"train.mixed_precision={precision}",))


def read_log(model_dir, split="train"):
    with tf.io.gfile.GFile(os.path.join(model_dir, progress.METRICS_FILE)) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def iteration(checkpoint):
    # (Not on ram://: its file system calls a checkpoint prefix a directory; gs:// does not.)
    return int(tf.train.load_checkpoint(checkpoint).get_tensor(
        "optimizer/iteration/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tokenizer, corpus_examples, write_data):
    """``runs[precision]``: that precision's run, made on first use (a failing one fails only
    the tests that use it). The float32 run reads its data from and writes its model_dir to
    ``ram://``: TensorFlow's in-memory file system, reached through tf.io.gfile as gs:// is."""
    root = tmp_path_factory.mktemp("precision")
    data = str(root / "data")
    write_data(data, tokenizer, corpus_examples(tokenizer, 128))
    remote = f"ram://{root.name}"
    tf.io.gfile.makedirs(f"{remote}/data")
    for name in tf.io.gfile.listdir(data):
        tf.io.gfile.copy(os.path.join(data, name), f"{remote}/data/{name}")

    class Runs(dict):
        def __missing__(self, precision):
            on_ram = precision == "float32"
            model_dir = f"{remote}/{precision}" if on_ram else str(root / precision)
            result = loop.run_pretraining(
                mp_config(precision), f"{remote}/data" if on_ram else data, model_dir,
                distribute.make_strategy("cpu"), echo=lambda line: None)
            with tf.io.gfile.GFile(os.path.join(model_dir, progress.METRICS_FILE)) as f:
                text = f.read()
            self[precision] = {"model_dir": model_dir, "result": result,
                               "log": read_log(model_dir), "metrics_text": text}
            return self[precision]

    yield Runs(data=data)
    tf.io.gfile.rmtree(remote)


def test_pretraining_data_and_model_dir_through_gfile(runs):
    run = runs["float32"]
    model_dir = run["model_dir"]
    assert model_dir.startswith("ram://") and run["result"].checkpoint == f"{model_dir}/ckpt-24"
    for name in ("config.yaml", "checkpoint", "ckpt-24.index", "pretrained/config.yaml",
                 "pretrained/discriminator.weights.h5", "pretrained/vocab.txt"):
        assert tf.io.gfile.exists(f"{model_dir}/{name}"), name
    assert tf.io.gfile.listdir(f"{model_dir}/train")  # TensorBoard events
    assert [r["step"] for r in run["log"]] == list(range(1, 25))


def test_mixed_precision_trains_close_to_float32(runs):
    logs = {p: runs[p]["log"] for p in PRECISIONS}
    for precision, log in logs.items():
        assert [r["step"] for r in log] == list(range(1, 25)), precision
        for r in log:
            for key in ("loss", "generator_loss", "discriminator_loss"):
                assert math.isfinite(r[key]), (precision, r)
    reference = [r["loss"] for r in logs["float32"]]
    # bfloat16 (TPU): no loss scaling, nothing skipped; every step within 1% (0.11% seen).
    np.testing.assert_allclose([r["loss"] for r in logs["mixed_bfloat16"]], reference, rtol=1e-2)
    # float16 (GPU): step 1 differs in arithmetic only (same weights and batch); the skipped
    # steps then delay learning, so the last 8 steps' mean loss is compared, within 10%
    # (1.4% seen), and must be well below the first loss.
    half = [r["loss"] for r in logs["mixed_float16"]]
    assert half[0] == pytest.approx(reference[0], rel=1e-3)
    assert np.mean(half[-8:]) == pytest.approx(np.mean(reference[-8:]), rel=0.1)
    assert np.mean(half[-8:]) < 0.8 * half[0]


def test_float16_skipped_steps_advance_the_global_step(runs):
    """A step skipped for overflow is still a step: ``optimizer.iterations``, the checkpoint
    number and the metrics' step are one count."""
    run = runs["mixed_float16"]
    skipped = [r["step"] for r in run["log"] if not math.isfinite(r["gradient_norm"])]
    assert skipped and skipped[0] == 1 and len(skipped) <= 6, skipped  # 2^15 → 2^11: 4 seen
    assert all(math.isfinite(r["gradient_norm"]) for r in runs["float32"]["log"])
    assert run["result"].step == 24 and run["result"].checkpoint.endswith("ckpt-24")
    assert iteration(run["result"].checkpoint) == 24
    for checkpoint in tf.train.get_checkpoint_state(run["model_dir"]).all_model_checkpoint_paths:
        assert iteration(checkpoint) == int(checkpoint.rsplit("-", 1)[1]), checkpoint


# The CLI, killed by SIGKILL right after it wrote its first checkpoint (deterministic: no race
# with a polling parent).
_KILLED_AFTER_FIRST_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import tensorflow as tf
    save = tf.train.CheckpointManager.save
    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    tf.train.CheckpointManager.save = save_then_die
    from electra_tf import pretrain
    sys.exit(pretrain.main(sys.argv[1:]))
""")


def test_float16_kill_9_resume_across_a_skipped_step_is_exact(runs, tmp_path):
    reference = runs["mixed_float16"]
    assert any(not math.isfinite(r["gradient_norm"]) for r in reference["log"][2:]), (
        "no skipped step after ckpt-2: this test would not cross one")
    model_dir = str(tmp_path)
    command = [sys.executable, "-c", _KILLED_AFTER_FIRST_CHECKPOINT, "--config", "debug_tiny",
               "--data", runs["data"], "--model_dir", model_dir, "--strategy", "cpu"]
    for item in MP_OVERRIDES + ("train.mixed_precision=mixed_float16",):
        command += ["--set", item]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-2")
    assert iteration(os.path.join(model_dir, "ckpt-2")) == 2

    resumed = loop.run_pretraining(mp_config("mixed_float16"), runs["data"], model_dir,
                                   distribute.make_strategy("cpu"), echo=lambda line: None)
    assert (resumed.resumed_from, resumed.step, resumed.completed) == (2, 24, True)
    with open(os.path.join(model_dir, progress.METRICS_FILE)) as f:
        assert f.read() == reference["metrics_text"]  # byte for byte (NaN != NaN as floats)


def test_finetuning_a_mixed_precision_model_exports_float32(runs, tmp_path):
    """Fine-tuning ignores ``train.mixed_precision`` (it trains in float32 from the float32
    weights that both mixed policies keep), so one of the two pre-trained models is enough."""
    lines = ["It is a truth universally acknowledged.", "Call me Ishmael.",
             "Some years ago, never mind how long.", "A single man in possession of a fortune."]
    for split, count in (("train", 16), ("dev", 8)):
        with open(tmp_path / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("text\tlabel\n" + "".join(f"{lines[i % 4]}\t{'ab'[i % 2]}\n"
                                              for i in range(count)))
    exports = tmp_path / "exports" / "books"
    status = finetune_cli.main([
        "--init", runs["mixed_bfloat16"]["model_dir"], "--output_dir", str(tmp_path / "run"),
        "--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"),
        "--export_dir", str(exports), "--set", "finetune.epochs=1",
        "--set", "finetune.batch_size=8", "--set", "finetune.seq_length=32"])
    assert status == 0
    loaded = tf.saved_model.load(str(exports / "1"))
    serve = loaded.signatures["serving_default"]
    assert {k: v.dtype for k, v in serve.structured_outputs.items()} == {
        "probabilities": tf.float32, "logits": tf.float32, "label": tf.string}
    stored = tf.train.load_checkpoint(str(exports / "1" / "variables" / "variables"))
    assert {d for d in stored.get_variable_to_dtype_map().values() if d.is_floating} == {
        tf.float32}
    out = serve(text=tf.constant(lines))
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
