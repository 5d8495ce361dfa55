"""Why does pre-training lose to random init on the demo task? Probes of frozen encoders.

For a randomly initialised encoder (the fine-tuning recipe's: ``ElectraEncoder(config.model,
seed=derive_seed(seed, "encoder"))``) and pre-trained ones (``load_pretrained``), with no
fine-tuning at all, on the demo task's training file (its first ``--train-examples`` rows) and
dev file:

* a linear probe: multinomial logistic regression (numpy, Newton's method, L2 penalty
  ``lambda`` on the weights, bias free; the same settings for every encoder) on the [CLS]
  vector and on the mean over non-padding tokens, of every layer (``embeddings`` = the input to
  the first transformer layer, after ``embeddings_project``). Features are standardised with
  the training set's mean and std (``standardised``) or used as they are (``raw``: what the
  fine-tuning head sees);
* anisotropy: the mean cosine over all pairs of distinct non-padding token outputs of the dev
  set, per layer (the pre-training log's ``representation_cosine``, over the whole dev set);
* the [CLS] vector: its mean L2 norm, the mean cosine between the [CLS] vectors of different
  examples, and how much it varies across examples (``sqrt(total variance) / mean norm``);
* the same variation for the mean-pooled vector, for comparison.

``--finetune-check`` adds one fine-tuning run per encoder (ONE seed, labelled as such) with the
demo run's fine-tuning config and ``--set`` overrides, e.g. ``finetune.layerwise_lr_decay=1.0``.

Usage::

    python benchmarks/probe_representations.py \\
        --task-dir /tmp/demo_e3/demo_task --train-file train_300.tsv \\
        --encoder electra_demo=/tmp/demo_e3/pretrain \\
        --encoder electra=/tmp/electra_ablation/pretrain/electra \\
        --encoder mlm=/tmp/electra_ablation/pretrain/mlm

Writes ``benchmarks/results/probe_representations.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from electra_tf.finetuning.config import (apply_finetuning_overrides,  # noqa: E402
                                          load_saved_finetuning_config)
from electra_tf.finetuning.loop import encode_split, finetune_once  # noqa: E402
from electra_tf.finetuning.tasks import read_file_task  # noqa: E402
from electra_tf.models.encoder import _MASK_ADDER, ElectraEncoder  # noqa: E402
from electra_tf.models.layers import derive_seed  # noqa: E402
from electra_tf.models.pretrained import load_pretrained  # noqa: E402

LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)


def hidden_states(encoder: ElectraEncoder, features: dict, batch_size: int = 128) -> list:
    """[embeddings, layer_1, ..., layer_L] outputs, float64 numpy [n, seq, hidden], inference
    mode (the same operations as ``ElectraEncoder.call``)."""
    outputs = None
    for start in range(0, len(features["token_ids"]), batch_size):
        batch = {k: tf.constant(v[start:start + batch_size]) for k, v in features.items()}
        x = encoder.embeddings(batch["token_ids"], batch["segment_ids"], training=False)
        if encoder.embeddings_project is not None:
            x = encoder.embeddings_project(x)
        mask = tf.cast(batch["padding_mask"], x.dtype)
        bias = ((1.0 - mask) * _MASK_ADDER)[:, tf.newaxis, tf.newaxis, :]
        states = [x]
        for layer in encoder.transformer_layers:
            x = layer(x, bias, training=False)
            states.append(x)
        states = [s.numpy().astype(np.float64) for s in states]
        outputs = [[s] for s in states] if outputs is None else [
            o + [s] for o, s in zip(outputs, states)]
    return [np.concatenate(o) for o in outputs]


def pooled(state: np.ndarray, mask: np.ndarray) -> dict:
    """[CLS] (position 0) and the mean over non-padding tokens, [n, hidden] each."""
    m = mask[..., None].astype(np.float64)
    return {"cls": state[:, 0], "mean": (state * m).sum(1) / m.sum(1)}


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, lam: float,
                 iterations: int = 50) -> np.ndarray:
    """Minimises mean cross-entropy + lam/2 ‖W‖² (bias not penalised) by damped Newton steps.

    Returns W [hidden + 1, classes], the last row the bias.
    """
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], 1)
    targets = np.eye(num_classes)[y]
    penalty = np.full(d + 1, lam)
    penalty[-1] = 0.0
    w = np.zeros((d + 1, num_classes))

    def objective(w):
        logits = xb @ w
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -(targets * log_p).sum() / n + 0.5 * (penalty[:, None] * w * w).sum(), log_p

    loss, log_p = objective(w)
    for _ in range(iterations):
        p = np.exp(log_p)
        grad = xb.T @ (p - targets) / n + penalty[:, None] * w
        # Hessian of the mean cross-entropy: sum_i (diag p_i − p_i p_iᵀ) ⊗ x_i x_iᵀ / n.
        outer = np.einsum("ik,kl->ikl", p, np.eye(num_classes)) - np.einsum("ik,il->ikl", p, p)
        hessian = np.einsum("ia,ib,ikl->akbl", xb, xb, outer, optimize=True).reshape(
            (d + 1) * num_classes, (d + 1) * num_classes) / n
        hessian += np.diag(np.repeat(penalty, num_classes)) + 1e-8 * np.eye(len(hessian))
        step = np.linalg.solve(hessian, grad.reshape(-1)).reshape(w.shape)
        scale = 1.0
        while scale > 1e-4:
            new_loss, new_log_p = objective(w - scale * step)
            if new_loss <= loss:
                break
            scale /= 2
        if new_loss > loss:  # no descent left: converged to numerical precision
            break
        w, improvement, loss, log_p = w - scale * step, loss - new_loss, new_loss, new_log_p
        if improvement < 1e-10:
            break
    return w


def probe(train_x, train_y, dev_x, dev_y, num_classes: int) -> dict:
    """Dev accuracy of the logistic probe per feature scaling and lambda."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    variants = {"standardised": ((train_x - mean) / std, (dev_x - mean) / std),
                "raw": (train_x, dev_x)}
    result = {}
    for name, (tr, dv) in variants.items():
        accuracies = {}
        for lam in LAMBDAS:
            w = fit_logistic(tr, train_y, num_classes, lam)
            logits = np.concatenate([dv, np.ones((len(dv), 1))], 1) @ w
            accuracies[f"{lam:g}"] = float((logits.argmax(1) == dev_y).mean())
        result[name] = accuracies
    return result


def mean_token_cosine(state: np.ndarray, mask: np.ndarray) -> float:
    """Mean cosine over all pairs of distinct non-padding tokens, (‖Σu‖² − n) / (n(n − 1))."""
    units = state[mask.astype(bool)]
    units = units / np.linalg.norm(units, axis=1, keepdims=True)
    n = len(units)
    return float((np.square(units.sum(0)).sum() - n) / (n * (n - 1)))


def vector_stats(vectors: np.ndarray) -> dict:
    """Norm, spread across examples and mean pairwise cosine of per-example vectors [n, h]."""
    norms = np.linalg.norm(vectors, axis=1)
    spread = np.sqrt(vectors.var(0).sum())
    return {"mean_norm": float(norms.mean()),
            "std_across_examples": float(spread),
            "std_over_norm": float(spread / norms.mean()),
            "mean_pairwise_cosine": mean_token_cosine(vectors[:, None], np.ones((len(vectors), 1)))}


def analyse(encoder: ElectraEncoder, train: dict, train_y, dev: dict, dev_y,
            num_classes: int) -> dict:
    train_states = hidden_states(encoder, train)
    dev_states = hidden_states(encoder, dev)
    names = ["embeddings"] + [f"layer_{i + 1}" for i in range(len(train_states) - 1)]
    layers = {}
    for name, tr_state, dv_state in zip(names, train_states, dev_states):
        tr_pool = pooled(tr_state, train["padding_mask"])
        dv_pool = pooled(dv_state, dev["padding_mask"])
        layers[name] = {
            "token_cosine_dev": mean_token_cosine(dv_state, dev["padding_mask"]),
            "cls_dev": vector_stats(dv_pool["cls"]),
            "mean_pool_dev": vector_stats(dv_pool["mean"]),
            "probe_dev_accuracy": {
                pool: probe(tr_pool[pool], train_y, dv_pool[pool], dev_y, num_classes)
                for pool in ("cls", "mean")},
        }
    return layers


def random_encoder(model_config, seed: int) -> ElectraEncoder:
    """The encoder ``build_classifier`` creates for ``--init none`` and this seed."""
    encoder = ElectraEncoder(model_config, seed=derive_seed(seed, "encoder"))
    encoder.build()
    return encoder


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task-dir", default="/tmp/demo_e3/demo_task")
    parser.add_argument("--train-file", default="train_300.tsv")
    parser.add_argument("--dev-file", default="dev.tsv")
    parser.add_argument("--train-examples", type=int, default=300,
                        help="the first N rows of the training file")
    parser.add_argument("--dev-examples", type=int, default=None)
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=DIR",
                        help="a pre-trained model directory (repeatable)")
    parser.add_argument("--random-seeds", default="1,2,3",
                        help="fine-tuning seeds whose random-init encoders are probed")
    parser.add_argument("--finetune-config", default="/tmp/demo_e3/finetune/300_pretrained/seed_1",
                        help="directory whose config.yaml --finetune-check fine-tunes with")
    parser.add_argument("--finetune-check", action="append", default=None, metavar="SETTINGS",
                        help="';'-separated --set overrides ('' = unchanged); one fine-tuning "
                             "run (seed --finetune-seed) per encoder per SETTINGS (repeatable)")
    parser.add_argument("--finetune-seed", type=int, default=1)
    parser.add_argument("--finetune-inits", default=None,
                        help="comma-separated encoder names (and/or 'none' = random init) that "
                             "--finetune-check fine-tunes; default all --encoder names and none")
    parser.add_argument("--output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "probe_representations.json"))
    args = parser.parse_args(argv)
    started = time.time()

    encoders, sources = {}, {}
    tokenizer = model_config = None
    for item in args.encoder:
        name, _, directory = item.partition("=")
        config, tokenizer, encoders[name] = load_pretrained(directory)
        sources[name], model_config = directory, config.model
    if model_config is None:
        parser.error("give at least one --encoder NAME=DIR (its config and tokenizer are used "
                     "for the random-init encoders too)")
    random_seeds = [int(s) for s in args.random_seeds.split(",") if s]
    for seed in random_seeds:
        encoders[f"random_seed{seed}"] = random_encoder(model_config, seed)
        sources[f"random_seed{seed}"] = "random init (derive_seed(seed, 'encoder'))"

    task, train_split, dev_split = read_file_task(
        os.path.join(args.task_dir, args.train_file), os.path.join(args.task_dir, args.dev_file))
    ft_config = load_saved_finetuning_config(args.finetune_config)
    seq_length = ft_config.finetune.seq_length
    train = {k: v[:args.train_examples]
             for k, v in encode_split(tokenizer, train_split, seq_length).items()}
    dev = {k: v[:args.dev_examples] for k, v in encode_split(tokenizer, dev_split,
                                                              seq_length).items()}
    train_y = train_split.labels[:args.train_examples]
    dev_y = dev_split.labels[:args.dev_examples]
    num_classes = task.num_outputs

    results = {"command": "python benchmarks/probe_representations.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]),
        "encoders": sources,
        "train_examples": int(len(train_y)), "dev_examples": int(len(dev_y)),
        "labels": list(task.labels), "seq_length": seq_length, "lambdas": list(LAMBDAS),
        "probe": {}}
    for name, encoder in encoders.items():
        t = time.time()
        results["probe"][name] = analyse(encoder, train, train_y, dev, dev_y, num_classes)
        print(f"{name}: probed in {time.time() - t:.1f}s", flush=True)

    if args.finetune_check:
        results["finetune_check"] = {"note": f"ONE seed ({args.finetune_seed}): a single-seed "
                                     "check, not a result", "runs": {}}
        init_names = (args.finetune_inits.split(",") if args.finetune_inits else
                      [n for n in encoders if not n.startswith("random_seed")] + ["none"])
        with tempfile.TemporaryDirectory() as tmp:
            for settings in args.finetune_check:
                overrides = [s for s in settings.split(";") if s]
                config = apply_finetuning_overrides(ft_config, overrides)
                for name in init_names:
                    run = finetune_once(config, tokenizer, task, train, train_y, dev, dev_y,
                                        os.path.join(tmp, f"{len(os.listdir(tmp))}"),
                                        args.finetune_seed,
                                        init_encoder=encoders.get(name), init=name,
                                        echo=lambda line: None)
                    key = f"{name} | {settings or 'demo config'}"
                    results["finetune_check"]["runs"][key] = {
                        "final_accuracy": run.final["accuracy"],
                        "best_accuracy": run.best["accuracy"],
                        "per_epoch_accuracy": [e["accuracy"] for e in run.epochs]}
                    print(f"finetune {key}: final {run.final['accuracy']:.3f}", flush=True)
    results["wall_seconds"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
