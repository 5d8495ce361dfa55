"""One-step parity with TF Model Garden's ``ElectraPretrainer``: losses and every gradient.

The same weights, batch, masks and Gumbel noise go through our ``ElectraPretrainer`` (in this
process, Keras 3) and through Model Garden's (tf-models-official, tf_keras, in ``--peer_python``:
the two Keras versions cannot share a process). The generator loss, the discriminator loss and
the gradient of ``mlm + 50 · rtd`` with respect to every trainable variable must agree: losses
within ``LOSS_TOLERANCE`` (absolute), each variable's gradient within ``GRADIENT_TOLERANCE``
relative to that variable's largest peer gradient entry. Intermediate activations (embeddings,
every layer, MLM logits, RTD logits) are compared too, so a disagreement says where it starts.

What is made equal for this test (Model Garden differs by design; docs/validation.md):

* **Embedding sharing.** Model Garden ties only the word-embedding table: the generator and the
  discriminator network each have their own position and segment tables and embedding
  LayerNorm. Ours shares all of them (reference ``shared_embeddings``). Both peer copies get our
  values, and the gradient of a shared variable is the *sum* of the two peer copies' gradients.
* **Sampling.** Model Garden's ``sample_from_softmax`` draws unseeded ``tf.random.uniform`` noise
  and has no temperature; it is replaced, for this test, by our ``sampling.gumbel_max_sample``
  with our per-example seeds, applied to the peer's own generator logits. Everything else of
  its ``ElectraPretrainer.call`` (unmasking, scatter of the samples, labels) runs as is.
* **GELU.** Model Garden maps the activation name ``"gelu"`` to the tanh approximation
  (``official.modeling.activations.gelu``); ours is the exact (erf) GELU of the reference. The
  peer networks are built as ``electra_task._build_pretrainer`` builds them but with an
  exact-GELU callable (encoder FFNs and the MLM / RTD heads).
* **Dropout** is 0 on both sides; **masking** is ours (Model Garden's input pipeline masks
  offline), passed to the peer as ``masked_lm_positions/ids/weights``.
* **Weights** are re-drawn from N(0, ``INIT_STDDEV``²) (LayerNorm gammas 1 + N(0, σ²)), biases
  included: with the default 0.02 initialisation and zero biases, activations are so small that
  real differences (GELU form, LayerNorm epsilon, bias paths) would hide below tolerance. (With
  these weights, Model Garden's tanh GELU fails: generator loss off by 1.5e-4, gradients by up
  to 1e-2 relative, activations from the first transformer layer on.) One MLM output bias is
  raised (``LABEL_BIAS_BOOST``) so that some samples equal their original token and both
  discriminator labels occur at masked positions.

Usage:
  python benchmarks/parity_model_garden.py [--peer_python /tmp/peers/bin/python]
      [--output benchmarks/results/parity_model_garden.json]

Exit status: 0 on parity (or when no peer Python exists: then the JSON says ``"skipped"``),
1 on any disagreement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PEER_PYTHON = "/tmp/peers/bin/python"
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "parity_model_garden.json")

LOSS_TOLERANCE = 1e-5  # absolute, on each loss
GRADIENT_TOLERANCE = 1e-4  # max |ours − peer| / max |peer|, per variable
# Gradients that are zero in exact arithmetic: a key bias adds q·b_k to every score of a query
# row alike, and the softmax over keys ignores a constant. Both sides return rounding noise
# (~1e-8), so these are checked as zeros: |ours| and |peer| below GRADIENT_TOLERANCE times the
# largest gradient entry of the model.
EXACT_ZERO_GRADIENT = re.compile(r"/layer_\d+/key/bias$")
ACTIVATION_TOLERANCE = 1e-4  # same measure, per activation (diagnostic)
INIT_STDDEV = 0.3
INIT_SEED = 0
# Added to the MLM output bias of the batch's most frequent label id: with random weights over
# 30,522 ids no sample would equal its original token, and the "sampled the original, so not
# replaced" label path (reference ``_get_fake_data``) would go untested. With it, that id is a
# likely sample everywhere, the original token at its own positions, and the softmax stays broad
# over the rest of the vocabulary (generator loss ~10 nats).
LABEL_BIAS_BOOST = 10.0
OVERRIDES = ("model.dropout_rate=0", "model.attention_dropout_rate=0")

# A real batch: sentence pairs (segment 1) and single sentences (padding) at debug_tiny's
# seq_length 32; one pair is long enough to be truncated.
EXAMPLES = (
    ("The quick brown fox jumps over the lazy dog.", "It was not amused."),
    ("Electra trains a discriminator to detect replaced tokens.",
     "A small generator proposes the replacements, and both networks learn together from "
     "the same masked positions of every sequence in the batch."),
    ("Hello, world!", None),
    ("She sold sea shells by the sea shore, and the shells she sold were surely sea shells.",
     None),
    ("Paris is the capital of France.", "Berlin is the capital of Germany."),
    ("Numbers like 1984 and 2026 are split into word pieces.", None),
)


# -- the mapping table ---------------------------------------------------------------------------

def model_spec(config) -> dict:
    """Plain data (both processes read it): sizes, masking and sampling settings."""
    def encoder(m):
        return {"vocab_size": m.vocab_size, "hidden_size": m.hidden_size,
                "num_layers": m.num_layers, "num_heads": m.num_heads,
                "intermediate_size": m.intermediate_size, "embedding_size": m.embedding_size,
                "max_position_embeddings": m.max_position_embeddings,
                "type_vocab_size": m.type_vocab_size, "activation": m.activation,
                "layer_norm_epsilon": m.layer_norm_epsilon,
                "dropout_rate": m.dropout_rate,
                "attention_dropout_rate": m.attention_dropout_rate}
    return {"generator": encoder(config.generator_model), "discriminator": encoder(config.model),
            "seq_length": config.data.seq_length, "max_predictions": config.max_predictions,
            "temperature": config.objective.temperature,
            "generator_weight": config.objective.generator_weight,
            "discriminator_weight": config.objective.discriminator_weight}


def mapping_table(spec: dict, prefix: str = "electra_pretrainer/") -> list[dict]:
    """Our variable path → the Model Garden variables that hold the same numbers.

    Each row is ``{"ours": path, "peer": [accessor, ...]}``; an accessor is an attribute path
    from the peer's ``ElectraPretrainer`` (``official.nlp.modeling.models``). Every value is
    moved by a plain row-major reshape to the peer variable's shape:

    ====================================  ====================  ==========================
    ours (Keras 3)                        shape                 Model Garden (tf_keras)
    ====================================  ====================  ==========================
    embeddings/word_embeddings            [V, E]                one table, tied everywhere
    embeddings/position_embeddings        [P, E]                generator + discriminator
    embeddings/segment_embeddings         [2, E]                generator + discriminator
    embeddings/layer_norm/gamma|beta      [E]                   generator + discriminator
    <enc>/embeddings_project/kernel|bias  [E, H] | [H]          _embedding_projection
    <enc>/layer_i/query|key|value/kernel  [H, H] → [H, n, d]    _attention_layer._query_dense…
    <enc>/layer_i/query|key|value/bias    [H] → [n, d]
    <enc>/layer_i/attention_output/kernel [H, H] → [n, d, H]    _attention_layer._output_dense
    <enc>/layer_i/attention_layer_norm    [H]                   _attention_layer_norm
    <enc>/layer_i/intermediate            [H, F] | [F]          _intermediate_dense
    <enc>/layer_i/output_dense            [F, H] | [H]          _output_dense
    <enc>/layer_i/output_layer_norm       [H]                   _output_layer_norm
    mlm_head/dense, layer_norm            [Hg, E], [E]          masked_lm.dense, .layer_norm
    mlm_head/output_bias                  [V]                   masked_lm.bias
    rtd_head/dense, logits                [H, H], [H, 1]        discriminator_projection, _head
    ====================================  ====================  ==========================

    Our head split is ``reshape([.., H] → [.., n, d])`` (``TransformerLayer._split_heads``),
    the peer's EinsumDense kernels are ``[H, n, d]`` and ``[n, d, H]``: the same row-major order,
    so a reshape maps them. The peer's two pooler layers and its generator classification head
    have no counterpart: the ELECTRA losses do not use them (their gradients must be zero).
    """
    rows = []

    def add(ours, *peer):
        rows.append({"ours": prefix + ours, "peer": list(peer)})

    networks = {"generator": "generator_network", "discriminator": "discriminator_network"}
    both = lambda attr: [f"{net}.{attr}" for net in networks.values()]
    add("embeddings/word_embeddings", "discriminator_network._embedding_layer.embeddings")
    add("embeddings/position_embeddings",
        *both("_position_embedding_layer._position_embeddings"))
    add("embeddings/segment_embeddings", *both("_type_embedding_layer.embeddings"))
    for weight in ("gamma", "beta"):
        add(f"embeddings/layer_norm/{weight}", *both(f"_embedding_norm_layer.{weight}"))

    sublayers = {"query": "_attention_layer._query_dense",
                 "key": "_attention_layer._key_dense",
                 "value": "_attention_layer._value_dense",
                 "attention_output": "_attention_layer._output_dense",
                 "intermediate": "_intermediate_dense", "output_dense": "_output_dense"}
    norms = {"attention_layer_norm": "_attention_layer_norm",
             "output_layer_norm": "_output_layer_norm"}
    for ours, net in networks.items():
        size = spec[ours]
        if size["embedding_size"] != size["hidden_size"]:
            for weight in ("kernel", "bias"):
                add(f"{ours}/embeddings_project/{weight}", f"{net}._embedding_projection.{weight}")
        for i in range(size["num_layers"]):
            layer = f"{net}.transformer_layers[{i}]"
            for name, attr in sublayers.items():
                for weight in ("kernel", "bias"):
                    add(f"{ours}/layer_{i}/{name}/{weight}", f"{layer}.{attr}.{weight}")
            for name, attr in norms.items():
                for weight in ("gamma", "beta"):
                    add(f"{ours}/layer_{i}/{name}/{weight}", f"{layer}.{attr}.{weight}")
    for weight in ("kernel", "bias"):
        add(f"mlm_head/dense/{weight}", f"masked_lm.dense.{weight}")
    for weight in ("gamma", "beta"):
        add(f"mlm_head/layer_norm/{weight}", f"masked_lm.layer_norm.{weight}")
    add("mlm_head/output_bias", "masked_lm.bias")
    for weight in ("kernel", "bias"):
        add(f"rtd_head/dense/{weight}", f"discriminator_projection.{weight}")
        add(f"rtd_head/logits/{weight}", f"discriminator_head.{weight}")
    return rows


def export_weights(model) -> dict:
    """``{variable path: numpy value}`` for every trainable variable of our pretrainer."""
    weights = {}
    for variable in model.trainable_variables:
        if variable.path in weights:
            raise ValueError(f"two trainable variables share the path {variable.path}")
        weights[variable.path] = variable.numpy()
    return weights


# -- our side ------------------------------------------------------------------------------------

def encoder_activations(encoder, inputs) -> list:
    """Embeddings (after the projection, if any) and each transformer layer's output.

    ``ElectraEncoder.call`` unrolled, so each stage can be compared; the caller checks that the
    last stage equals the encoder's own output.
    """
    import tensorflow as tf

    x = encoder.embeddings(inputs["token_ids"], inputs["segment_ids"], training=True)
    if encoder.embeddings_project is not None:
        x = encoder.embeddings_project(x)
    mask = tf.cast(inputs["padding_mask"], tf.float32)
    bias = ((1.0 - mask) * -10000.0)[:, tf.newaxis, tf.newaxis, :]  # as ElectraEncoder.call
    stages = [x]
    for layer in encoder.transformer_layers:
        x = layer(x, bias, training=True)
        stages.append(x)
    return stages


def run_ours(config, directory: str) -> dict:
    """Our step: writes ``batch.npz`` (inputs, masks, seeds), ``weights.npz`` and ``ours.npz``
    (losses, gradients, activations) to ``directory``; returns the losses."""
    import numpy as np
    import tensorflow as tf

    from electra_tf.objective import sampling
    from electra_tf.objective.pretrainer import build_pretrainer
    from electra_tf.tokenizer import Tokenizer

    if config.objective.replacements != "generator":
        raise ValueError("parity needs objective.replacements=generator")
    tokenizer = Tokenizer()
    model = build_pretrainer(config, tokenizer)
    rng = np.random.default_rng(INIT_SEED)
    for variable in sorted(model.trainable_variables, key=lambda v: v.path):
        value = rng.normal(0.0, INIT_STDDEV, variable.shape)
        if variable.path.endswith("/gamma"):
            value += 1.0
        variable.assign(value.astype(np.float32))

    encoded = [tokenizer.encode(tf.constant([a]), None if b is None else tf.constant([b]),
                                seq_length=config.data.seq_length) for a, b in EXAMPLES]
    data = {k: tf.concat([e[k] for e in encoded], 0) for k in encoded[0]}
    data["example_index"] = tf.range(len(EXAMPLES))
    # The step-0 masks and seeds exactly as train_step draws them.
    batch, totals = model._prepare(data, sampling.MASKING_STREAM, sampling.SAMPLING_STREAM,
                                   tf.constant(0, tf.int64))
    ids, counts = np.unique(batch["labels"].numpy()[batch["weights"].numpy() > 0],
                            return_counts=True)
    bias = model.mlm_head.output_bias
    bias.assign(bias + LABEL_BIAS_BOOST * tf.one_hot(ids[np.argmax(counts)], bias.shape[0]))
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        out = model._objective(batch, totals, training=True)
    grads = tape.gradient(out["loss"], variables)

    # The same forward pass in stages, for the activation comparison.
    inputs = {k: batch[k] for k in ("segment_ids", "padding_mask")}
    generator = encoder_activations(model.generator, {**inputs, "token_ids": batch["token_ids"]})
    mlm_logits = model.mlm_head(generator[-1], batch["positions"])
    sampled = sampling.gumbel_max_sample(mlm_logits, batch["sample_seeds"],
                                         config.objective.temperature)
    corrupted, is_replaced = sampling.replace_tokens(
        batch["original_ids"], batch["positions"], batch["weights"], sampled)
    discriminator = encoder_activations(model.discriminator, {**inputs, "token_ids": corrupted})
    rtd_logits = model.rtd_head(discriminator[-1])
    for encoder, ids, stages in ((model.generator, batch["token_ids"], generator),
                                 (model.discriminator, corrupted, discriminator)):
        whole = encoder({**inputs, "token_ids": ids}, training=True)
        if not np.array_equal(whole.numpy(), stages[-1].numpy()):
            raise AssertionError("encoder_activations no longer matches ElectraEncoder.call")

    np.savez(os.path.join(directory, "batch.npz"), mask_id=model.special_tokens["[MASK]"],
             **{k: v.numpy() for k, v in batch.items()})
    np.savez(os.path.join(directory, "weights.npz"), **export_weights(model))
    results = {f"grad:{v.path}": tf.convert_to_tensor(g).numpy() for v, g in zip(variables, grads)}
    results.update({f"act:generator/{'embeddings' if i == 0 else f'layer_{i - 1}'}": x.numpy()
                    for i, x in enumerate(generator)})
    results.update({f"act:discriminator/{'embeddings' if i == 0 else f'layer_{i - 1}'}": x.numpy()
                    for i, x in enumerate(discriminator)})
    results.update({"act:mlm_logits": mlm_logits.numpy(), "act:rtd_logits": rtd_logits.numpy(),
                    "ids:sampled": sampled.numpy(), "ids:corrupted": corrupted.numpy(),
                    "ids:is_replaced": is_replaced.numpy()})
    losses = {k: float(out[k]) for k in ("generator_loss", "discriminator_loss", "loss")}
    np.savez(os.path.join(directory, "ours.npz"), **results)
    return losses


# -- the peer side (runs in --peer_python) ---------------------------------------------------------

def _resolve(root, accessor: str):
    """``"a.b[2].c"`` → ``root.a.b[2].c``."""
    obj = root
    for part in accessor.split("."):
        match = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
        obj = getattr(obj, match.group(1))
        if match.group(2) is not None:
            obj = obj[int(match.group(2))]
    return obj


def build_peer(spec: dict):
    """Model Garden's ElectraPretrainer as ``electra_task._build_pretrainer`` builds it
    (``BertEncoder`` networks, the word-embedding layer of the discriminator passed to the
    generator, MLM head initializer and activation from the generator's config), with exact
    GELU and our dropout rates."""
    import tf_keras
    from official.nlp.modeling import models, networks

    def exact_gelu(x):  # Model Garden's "gelu" is the tanh approximation
        return tf_keras.activations.gelu(x, approximate=False)

    def encoder(size, embedding_layer=None):
        return networks.BertEncoder(
            vocab_size=size["vocab_size"], hidden_size=size["hidden_size"],
            num_layers=size["num_layers"], num_attention_heads=size["num_heads"],
            intermediate_size=size["intermediate_size"], activation=exact_gelu,
            dropout_rate=size["dropout_rate"],
            attention_dropout_rate=size["attention_dropout_rate"],
            max_sequence_length=size["max_position_embeddings"],
            type_vocab_size=size["type_vocab_size"],
            initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02),
            embedding_width=size["embedding_size"], embedding_layer=embedding_layer,
            dict_outputs=True, return_word_embeddings=True)

    discriminator = encoder(spec["discriminator"])
    generator = encoder(spec["generator"], discriminator.get_embedding_layer())
    return models.ElectraPretrainer(
        generator_network=generator, discriminator_network=discriminator,
        vocab_size=spec["generator"]["vocab_size"], num_classes=2,
        num_token_predictions=spec["max_predictions"], mlm_activation=exact_gelu,
        mlm_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))


def peer_task(discriminator_weight: float):
    """Model Garden's ``ElectraPretrainTask`` (its ``build_losses`` is the loss of its
    ``train_step``) and the metrics ``build_losses`` fills: ``lm_example_loss``,
    ``discriminator_loss``, ``total_loss``."""
    import tf_keras
    from official.nlp.tasks import electra_task

    task = electra_task.ElectraPretrainTask(electra_task.ElectraPretrainConfig(
        model=electra_task.electra.ElectraPretrainerConfig(
            discriminator_loss_weight=discriminator_weight)))
    metrics = [tf_keras.metrics.Mean(name=n)
               for n in ("lm_example_loss", "discriminator_loss", "total_loss")]
    return task, metrics


def run_peer(directory: str) -> dict:
    """The peer's step on our batch and weights: writes ``peer.npz`` (gradients mapped to our
    variable paths, activations) and returns losses and the unmapped variables' gradients."""
    import importlib.metadata

    import numpy as np
    import tensorflow as tf
    import tf_keras
    from official.nlp.modeling.models import electra_pretrainer

    from electra_tf.objective import sampling  # TensorFlow only: no Keras 3 in this process

    # Started before our side runs, so the two processes' imports overlap; our side writes
    # the inputs meanwhile and then sends a line.
    sys.stdin.readline()
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    batch = dict(np.load(os.path.join(directory, "batch.npz")))
    weights = dict(np.load(os.path.join(directory, "weights.npz")))
    model = build_peer(spec)
    inputs = {"input_word_ids": batch["token_ids"], "input_mask": batch["padding_mask"],
              "input_type_ids": batch["segment_ids"],
              "masked_lm_positions": batch["positions"], "masked_lm_ids": batch["labels"],
              "masked_lm_weights": batch["weights"]}
    inputs = {k: tf.constant(v) for k, v in inputs.items()}
    model(inputs)  # builds the variables (its own random sampler, results unused)

    assigned = set()
    for row in mapping_table(spec):
        for accessor in row["peer"]:
            variable = _resolve(model, accessor)
            variable.assign(weights[row["ours"]].reshape(variable.shape))
            assigned.add(id(variable))

    # Our Gumbel noise (seeds, temperature) instead of its unseeded sampler; the rest of
    # ElectraPretrainer.call, _get_fake_data included, runs unchanged.
    captured = {}

    def sample_from_softmax(logits, disallow=None):
        assert disallow is None  # disallow_correct=False, as the task's default
        captured["sampled"] = sampling.gumbel_max_sample(logits, batch["sample_seeds"],
                                                         spec["temperature"])
        return tf.one_hot(captured["sampled"], logits.shape[-1])

    electra_pretrainer.sample_from_softmax = sample_from_softmax
    task, metrics = peer_task(spec["discriminator_weight"])
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = task.build_losses(labels=inputs, model_outputs=outputs, metrics=metrics,
                                 aux_losses=model.losses)
    grads = {id(v): g for v, g in zip(variables, tape.gradient(loss, variables))}

    results = {}
    for row in mapping_table(spec):
        total = 0.0
        for accessor in row["peer"]:
            variable = _resolve(model, accessor)
            total = total + tf.convert_to_tensor(grads[id(variable)]).numpy()
        results[f"grad:{row['ours']}"] = total.reshape(weights[row["ours"]].shape)
    unmapped = [{"name": v.name, "max_abs_gradient": None if grads[id(v)] is None else float(
                    tf.reduce_max(tf.abs(tf.convert_to_tensor(grads[id(v)]))))}
                for v in variables if id(v) not in assigned]

    # Activations: the two networks' stages on the generator's and the discriminator's input.
    unmasked = electra_pretrainer.unmask(inputs, duplicate=True)
    corrupted, _ = electra_pretrainer.scatter_update(
        unmasked["input_word_ids"], captured["sampled"], inputs["masked_lm_positions"])
    for name, network, ids in (("generator", model.generator_network, inputs["input_word_ids"]),
                               ("discriminator", model.discriminator_network, corrupted)):
        out = network([ids, inputs["input_mask"], inputs["input_type_ids"]])
        results[f"act:{name}/embeddings"] = out["word_embeddings"].numpy()
        for i, x in enumerate(out["encoder_outputs"]):
            results[f"act:{name}/layer_{i}"] = x.numpy()
    results.update({"act:mlm_logits": outputs["lm_outputs"].numpy(),
                    "act:rtd_logits": outputs["disc_logits"].numpy(),
                    "ids:sampled": captured["sampled"].numpy(),
                    "ids:corrupted": corrupted.numpy(),
                    "ids:is_replaced": outputs["disc_label"].numpy()})
    np.savez(os.path.join(directory, "peer.npz"), **results)
    by_name = {m.name: float(m.result()) for m in metrics}
    return {"losses": {"generator_loss": by_name["lm_example_loss"],
                       "discriminator_loss": by_name["discriminator_loss"],
                       "loss": float(loss)},
            "unmapped_variable_gradients": unmapped,
            "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
            "tf_models_official": importlib.metadata.version("tf-models-official")}


# -- comparison ------------------------------------------------------------------------------------

def compare_arrays(ours, peer) -> dict:
    """Max |ours − peer|, max |peer| and their ratio (the relative difference used here)."""
    import numpy as np

    ours, peer = np.asarray(ours, np.float64), np.asarray(peer, np.float64)
    if ours.shape != peer.shape:
        raise ValueError(f"shapes differ: ours {ours.shape}, peer {peer.shape}")
    diff = float(np.max(np.abs(ours - peer))) if ours.size else 0.0
    scale = float(np.max(np.abs(peer))) if peer.size else 0.0
    return {"max_abs_diff": diff, "max_abs_peer": scale,
            "max_rel_diff": diff / scale if scale else (0.0 if diff == 0 else float("inf"))}


def compare(directory: str, our_losses: dict, peer: dict) -> dict:
    import numpy as np

    ours = dict(np.load(os.path.join(directory, "ours.npz")))
    theirs = dict(np.load(os.path.join(directory, "peer.npz")))
    batch = dict(np.load(os.path.join(directory, "batch.npz")))
    counts = {"examples": int(batch["padding_mask"].shape[0]),
              "tokens": int(batch["padding_mask"].sum()),
              "predictions": int(batch["weights"].sum()),
              "masked_with_mask_token": int(np.sum(batch["token_ids"] == batch["mask_id"])),
              "replaced": int(ours["ids:is_replaced"].sum()),
              "sampled_the_original": int(np.sum(
                  (ours["ids:sampled"] == batch["labels"]) * batch["weights"]))}
    losses = {}
    for name, value in our_losses.items():
        diff = abs(value - peer["losses"][name])
        losses[name] = {"ours": value, "peer": peer["losses"][name], "abs_diff": diff,
                        "ok": diff <= LOSS_TOLERANCE}
    gradients = []
    keys = sorted(k for k in ours if k.startswith("grad:"))
    largest = max(float(np.max(np.abs(theirs[k]))) for k in keys)
    for key in keys:
        row = {"variable": key[5:], **compare_arrays(ours[key], theirs[key])}
        if EXACT_ZERO_GRADIENT.search(key):
            row["exactly_zero_in_theory"] = True
            row["max_abs_ours"] = float(np.max(np.abs(ours[key])))
            row["ok"] = max(row["max_abs_ours"], row["max_abs_peer"]) <= (
                GRADIENT_TOLERANCE * largest)
        else:
            row["ok"] = row["max_rel_diff"] <= GRADIENT_TOLERANCE
        gradients.append(row)
    activations = []
    for key in [k for k in ours if k.startswith("act:")]:
        row = {"activation": key[4:], **compare_arrays(ours[key], theirs[key])}
        row["ok"] = row["max_rel_diff"] <= ACTIVATION_TOLERANCE
        activations.append(row)
    ids = {key[4:]: bool(np.array_equal(ours[key], theirs[key]))
           for key in ours if key.startswith("ids:")}
    unused = peer["unmapped_variable_gradients"]
    unused_ok = all(u["max_abs_gradient"] in (None, 0.0) for u in unused)
    parity = (all(v["ok"] for v in losses.values()) and all(g["ok"] for g in gradients)
              and all(ids.values()) and unused_ok)
    return {"batch": counts, "losses": losses, "largest_gradient_entry": largest,
            "gradients": gradients,
            "activations": activations,
            "ids_equal": ids, "peer_only_variables": {"gradients": unused, "ok": unused_ok},
            "parity": parity}


def print_report(result: dict) -> None:
    print("batch:", ", ".join(f"{k} {v}" for k, v in result["batch"].items()), "\n")
    print(f"{'loss':<58} {'ours':>12} {'peer':>12} {'abs diff':>10}")
    for name, row in result["losses"].items():
        print(f"{name:<58} {row['ours']:12.7f} {row['peer']:12.7f} {row['abs_diff']:10.2e}"
              + ("" if row["ok"] else "  FAIL"))
    print(f"\n{'gradient of loss wrt':<58} {'max abs':>10} {'max rel':>10} {'max|peer|':>10}")
    for row in result["gradients"]:
        note = "  (zero in theory: both sides rounding noise)" if row.get(
            "exactly_zero_in_theory") else ""
        print(f"{row['variable']:<58} {row['max_abs_diff']:10.2e} {row['max_rel_diff']:10.2e} "
              f"{row['max_abs_peer']:10.2e}" + ("" if row["ok"] else "  FAIL") + note)
    print(f"\n{'activation':<58} {'max abs':>10} {'max rel':>10} {'max|peer|':>10}")
    for row in result["activations"]:
        print(f"{row['activation']:<58} {row['max_abs_diff']:10.2e} {row['max_rel_diff']:10.2e} "
              f"{row['max_abs_peer']:10.2e}" + ("" if row["ok"] else "  DIFFERS"))
    print("\nids equal:", ", ".join(f"{k}={v}" for k, v in result["ids_equal"].items()))
    print("peer-only variables (no counterpart; gradient must be None/0):",
          ", ".join(f"{u['name']}={u['max_abs_gradient']}"
                    for u in result["peer_only_variables"]["gradients"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer_python", default=None,
                        help=f"a Python with tf-models-official (default {DEFAULT_PEER_PYTHON} "
                             "if it exists)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--peer_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_worker:
        print(json.dumps(run_peer(args.peer_worker)))
        return 0

    result = {"command": "python benchmarks/parity_model_garden.py "
                         + " ".join(sys.argv[1:] if argv is None else argv),
              "tolerances": {"loss_abs": LOSS_TOLERANCE, "gradient_rel": GRADIENT_TOLERANCE,
                             "activation_rel": ACTIVATION_TOLERANCE,
                             "relative_diff": "max |ours - peer| / max |peer|, per variable"}}
    python = args.peer_python or (DEFAULT_PEER_PYTHON if os.path.exists(DEFAULT_PEER_PYTHON)
                                  else None)
    if python is None or not os.path.exists(python):
        reason = (f"no peer Python ({args.peer_python or DEFAULT_PEER_PYTHON} does not exist); "
                  "set one up with: python -m venv /tmp/peers && /tmp/peers/bin/pip install "
                  "tf-models-official 'tensorflow==2.20.*'")
        print(f"skipped: {reason}")
        return _write(args.output, {**result, "skipped": reason, "parity": None}, 0)

    import tensorflow as tf

    from electra_tf.config import to_dict
    from electra_tf.config_io import load_config

    config = load_config("debug_tiny", OVERRIDES)
    spec = model_spec(config)
    result.update({"config": "debug_tiny", "overrides": list(OVERRIDES),
                   "model": to_dict(config)["model"],
                   "generator": to_dict(config)["derived"]["generator_model"],
                   "init_stddev": INIT_STDDEV, "tensorflow": tf.__version__,
                   "examples": [list(e) for e in EXAMPLES]})
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "spec.json"), "w") as f:
            json.dump(spec, f)
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
        worker = subprocess.Popen(
            [python, os.path.abspath(__file__), "--peer_worker", directory],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        try:
            our_losses = run_ours(config, directory)
        except BaseException:
            worker.kill()
            worker.communicate()
            raise
        stdout, stderr = worker.communicate("inputs written\n")
        if worker.returncode:
            print(stderr[-4000:])
            return _write(args.output, {**result, "parity": False,
                                        "peer_error": stderr[-4000:]}, 1)
        peer = json.loads(stdout.strip().splitlines()[-1])
        result["peer"] = {k: peer[k] for k in ("tensorflow", "tf_keras", "tf_models_official")}
        result.update(compare(directory, our_losses, peer))
    print_report(result)
    verdict = "PASS" if result["parity"] else "FAIL"
    print(f"\nparity with Model Garden: {verdict}")
    result["verdict"] = verdict.lower()
    return _write(args.output, result, 0 if result["parity"] else 1)


def _write(path: str, result: dict, status: int) -> int:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
