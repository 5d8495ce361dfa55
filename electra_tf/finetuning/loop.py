"""Fine-tuning a discriminator for sequence classification or regression: one run, several seeds.

As google-research/electra ``run_finetuning.py``: the model is
:class:`~electra_tf.finetuning.classifier.ElectraClassifier`; the loss softmax cross-entropy or
squared error per example, summed over the batch (``finetune.loss_reduction``); the optimizer
pre-training's AdamW (same warmup × linear decay schedule, weight decay, clipping at global norm
1.0) with layer-wise learning-rate decay ``lr · d^(L + 2 − depth)``; the model kept is the one
after the last epoch (``finetune.keep``).

One run writes its directory (:mod:`electra_tf.finetuning.classifier`), ``metrics.json`` (dev
metrics of every epoch, of the final one and of the best one, and which of the two was saved)
and TensorBoard ``train/``, ``dev/``. With several seeds each run goes to ``DIR/seed_N`` and
``DIR/summary.json`` holds every run's final and best metrics and their medians (the paper
reports medians over seeds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from electra_tf.config import OptimizerConfig
from electra_tf.finetuning import metrics as metrics_lib
from electra_tf.finetuning.classifier import (SUMMARY_FILE, build_classifier, copy_encoder_weights,
                                              save_classifier)
from electra_tf.finetuning.config import FinetuningConfig, parse_seeds
from electra_tf.finetuning.tasks import Split, TaskInfo
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.tokenizer import Tokenizer
from electra_tf.training.gradients import apply_gradients
from electra_tf.training.optimization import build_optimizer, layerwise_lr_multipliers

METRICS_FILE = "metrics.json"
EVAL_BATCH_SIZE = 128


# ---------------------------------------------------------------------------------------------
# Data.

def encode_split(tokenizer: Tokenizer, split: Split, seq_length: int,
                 chunk: int = 1024) -> dict[str, np.ndarray]:
    """Tokenizes a split once: ``token_ids``/``segment_ids``/``padding_mask`` int32 [n, seq]."""
    parts = []
    for start in range(0, len(split), chunk):
        texts = tf.constant(split.texts[start:start + chunk], tf.string)
        texts_b = (tf.constant(split.texts_b[start:start + chunk], tf.string)
                   if split.texts_b is not None else None)
        parts.append({k: v.numpy() for k, v in
                      tokenizer.encode(texts, texts_b, seq_length=seq_length).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batches(features: dict[str, np.ndarray], labels: np.ndarray, batch_size: int,
             order: np.ndarray):
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield {k: v[rows] for k, v in features.items()}, labels[rows]


# ---------------------------------------------------------------------------------------------
# One run.

@dataclasses.dataclass
class SeedRun:
    """One seed's fine-tuning.

    Attributes:
      run_dir: its directory.
      seed: its seed.
      final: dev metrics after the last epoch (with ``epoch`` and ``step``).
      best: dev metrics of the epoch with the best main metric (with ``epoch`` and ``step``).
      kept: ``final`` or ``best``: the one whose weights the run saved (``finetune.keep``).
      epochs: every epoch's record (train loss, seconds, dev metrics).
    """

    run_dir: str
    seed: int
    final: dict
    best: dict
    kept: str
    epochs: list

    @property
    def kept_metrics(self) -> dict:
        """The dev metrics of the saved weights."""
        return self.final if self.kept == "final" else self.best


def finetuning_optimizer_config(config: FinetuningConfig) -> OptimizerConfig:
    """The reference's fine-tuning AdamW with the ``finetune`` rate, warmup and weight decay.

    Every other setting is :class:`~electra_tf.config.OptimizerConfig`'s default, which is the
    reference's (no bias correction, clipping 1.0, linear decay to 0), whatever pre-training
    used. The layer-wise decay ``finetune.layerwise_lr_decay`` is applied by the multipliers.
    """
    ft = config.finetune
    return OptimizerConfig(name="adamw", learning_rate=ft.learning_rate, warmup_steps=0,
                           warmup_fraction=ft.warmup_fraction, weight_decay=ft.weight_decay)


def loss_fn(task_type: str, reduction: str) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """``(labels [batch], logits [batch, outputs]) -> scalar``: cross-entropy (classification)
    or squared error (regression) per example, summed over the batch (``reduction="sum"``, as
    the reference's ``run_finetuning.py``) or averaged (``"mean"``)."""
    reduce = tf.reduce_sum if reduction == "sum" else tf.reduce_mean
    if task_type == "classification":
        return lambda labels, logits: reduce(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return lambda labels, logits: reduce(tf.square(logits[:, 0] - labels))


def predict_logits(predict: Callable, features: dict[str, np.ndarray],
                   batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Runs ``predict(batch) -> logits`` over ``features`` in order: float32 [n, outputs]."""
    n = len(next(iter(features.values())))
    return np.concatenate([predict({k: v[i:i + batch_size] for k, v in features.items()}).numpy()
                           for i in range(0, n, batch_size)])


def task_metrics(task: TaskInfo, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy/macro-F1/MCC (classification) or Pearson/Spearman/MSE (regression)."""
    if task.task_type == "classification":
        return metrics_lib.classification_metrics(labels, logits)
    return metrics_lib.regression_metrics(labels, logits[:, 0])


def _dev_only(record: dict) -> dict:
    """An epoch record without its training figures: epoch, step and the dev metrics."""
    return {k: v for k, v in record.items() if k not in ("seconds", "train_loss", "clipped")}


def _describe(metrics: dict) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "step"))


def finetune_once(config: FinetuningConfig, tokenizer: Tokenizer, task: TaskInfo, train: dict,
                  train_labels: np.ndarray, dev: dict, dev_labels: np.ndarray, run_dir: str,
                  seed: int, init_encoder: Optional[ElectraEncoder] = None, init: str = "none",
                  echo: Callable[[str], None] = print) -> SeedRun:
    """Fine-tunes one seed and writes the run directory (see the module docstring).

    Args:
      config: effective config; ``finetune`` holds rate, d, warmup, batch, epochs, length,
        loss reduction and which epoch to keep.
      tokenizer: the tokenizer the features were encoded with (copied into the run).
      task: labels and columns.
      train, dev: :func:`encode_split` features; ``train_labels``/``dev_labels`` [n].
      run_dir: output directory of this run.
      seed: seeds initialisation of the head (and the encoder under ``--init none``),
        dropout and the order of training examples.
      init_encoder: pre-trained encoder whose weights start the run; None = random init.
      init: where the weights came from (recorded in config.json).
      echo: receives one progress line per epoch and one summary line.
    """
    ft = config.finetune
    model = build_classifier(config, task.num_outputs, seed)
    if init_encoder is not None:
        copy_encoder_weights(init_encoder, model.encoder, init)
    steps_per_epoch = -(-len(train_labels) // ft.batch_size)
    total_steps = steps_per_epoch * ft.epochs
    opt_config = finetuning_optimizer_config(config)
    multipliers = layerwise_lr_multipliers(model.encoder, model.head.trainable_variables,
                                           ft.layerwise_lr_decay)
    optimizer = build_optimizer(opt_config, total_steps, model, multipliers)
    variables = model.trainable_variables
    compute_loss = loss_fn(task.task_type, ft.loss_reduction)
    label_dtype = tf.int32 if task.task_type == "classification" else tf.float32
    spec = tf.TensorSpec([None, ft.seq_length], tf.int32)

    features_spec = {k: spec for k in train}

    # No autograph: the step has no tensor-dependent Python control flow, and converting the
    # model's code costs seconds per run.
    @tf.function(input_signature=[features_spec, tf.TensorSpec([None], label_dtype)],
                 autograph=False)
    def train_step(batch, labels):
        with tf.GradientTape() as tape:
            loss = compute_loss(labels, model(batch, training=True))
        norm = apply_gradients(optimizer, tape.gradient(loss, variables), variables)
        return loss, norm

    predict = tf.function(lambda batch: model(batch, training=False),
                          input_signature=[features_spec], autograph=False)

    os.makedirs(run_dir, exist_ok=True)
    writers = {name: tf.summary.create_file_writer(os.path.join(run_dir, name))
               for name in ("train", "dev")}
    main_metric = metrics_lib.MAIN_METRIC[task.task_type]
    epochs, best, best_weights = [], None, None
    rng = np.random.default_rng(seed)
    step = 0
    for epoch in range(1, ft.epochs + 1):
        start, losses, norms = time.time(), [], []
        for batch, labels in _batches(train, train_labels, ft.batch_size,
                                      rng.permutation(len(train_labels))):
            loss, norm = train_step(batch, labels)
            # Logged per example whatever the reduction, so that runs compare.
            losses.append(float(loss) / (len(labels) if ft.loss_reduction == "sum" else 1))
            norms.append(float(norm))
            step += 1
            if step % ft.log_every == 0 or step == total_steps:
                with writers["train"].as_default(step=step):
                    tf.summary.scalar("loss", np.mean(losses[-ft.log_every:]))
                    tf.summary.scalar("gradient_norm", np.mean(norms[-ft.log_every:]))
                    tf.summary.scalar("learning_rate", float(optimizer.learning_rate))
        dev_metrics = task_metrics(task, dev_labels, predict_logits(predict, dev))
        with writers["dev"].as_default(step=step):
            for name, value in dev_metrics.items():
                tf.summary.scalar(name, value)
        # ``clipped``: the fraction of steps whose gradient norm exceeded the clip norm (1.0),
        # which the summed loss makes common (docs/finetuning.md).
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                  "clipped": float(np.mean(np.array(norms) > opt_config.clip_norm)),
                  "seconds": round(time.time() - start, 2), **dev_metrics}
        epochs.append(record)
        improved = best is None or dev_metrics[main_metric] > best[main_metric]
        if improved:
            best = record
            if ft.keep == "best":
                best_weights = [v.numpy() for v in model.weights]
        echo(f"  seed {seed} epoch {epoch}/{ft.epochs}: train loss {record['train_loss']:.4f} "
             f"({steps_per_epoch} steps, {record['clipped']:.0%} clipped, "
             f"{record['seconds']:.1f}s) | dev {_describe(dev_metrics)}")
    for writer in writers.values():
        writer.close()
    # The reference evaluates and keeps the model after the last epoch (run_finetuning.py:
    # train, then evaluate); keep=best picks an epoch by its dev score instead.
    if ft.keep == "best":
        for variable, value in zip(model.weights, best_weights):
            variable.assign(value)
    kept = "final" if ft.keep == "last" else "best"
    save_classifier(run_dir, config, tokenizer, task, model,
                    {"init": init, "seed": seed, "kept": kept})
    final, best = _dev_only(epochs[-1]), _dev_only(best)
    with open(os.path.join(run_dir, METRICS_FILE), "w", encoding="utf-8") as f:
        json.dump({"main_metric": main_metric, "kept": kept, "final": final, "best": best,
                   "epochs": epochs, "train_examples": int(len(train_labels)),
                   "dev_examples": int(len(dev_labels))}, f, indent=2)
    echo(f"  seed {seed} dev final (epoch {final['epoch']}): {_describe(final)} | best (epoch "
         f"{best['epoch']}): {_describe(best)} | saved: {kept}")
    return SeedRun(run_dir, seed, final, best, kept, epochs)


# ---------------------------------------------------------------------------------------------
# Several seeds.

@dataclasses.dataclass
class FinetuneResult:
    """All runs of one fine-tuning command.

    Attributes:
      output_dir: the command's output directory.
      runs: one :class:`SeedRun` per seed, in the order given.
      median_final: median over seeds of each final-epoch dev metric.
      median_best: median over seeds of each best-epoch dev metric.
      kept: ``final`` or ``best``: whose weights the runs saved (``finetune.keep``).
      best_run_dir: the run whose saved weights have the highest main dev metric (the one
        ``--export_dir`` exports; picked on dev, so its dev score is biased upward).
    """

    output_dir: str
    runs: list
    median_final: dict
    median_best: dict
    kept: str
    best_run_dir: str

    @property
    def median(self) -> dict:
        """Median over seeds of the saved weights' dev metrics (final or best epoch)."""
        return self.median_final if self.kept == "final" else self.median_best


def _described(split: Split) -> str:
    """The split's source, and the blank lines skipped, so the file's line count adds up."""
    blank = split.blank_lines
    return split.source + (f", {blank} blank line{'s' * (blank > 1)} skipped" if blank else "")


def _median(metrics: list) -> dict:
    return {k: statistics.median(m[k] for m in metrics)
            for k in metrics[0] if k not in ("epoch", "step")}


def run_finetuning(config: FinetuningConfig, tokenizer: Tokenizer, task: TaskInfo, train: Split,
                   dev: Split, output_dir: str, init_encoder: Optional[ElectraEncoder] = None,
                   init: str = "none", echo: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tunes once per seed of ``config.finetune.seeds`` and summarises.

    One seed writes its run into ``output_dir``; several write ``output_dir/seed_N`` each and
    ``output_dir/summary.json`` (every seed's best dev metrics and the median).

    Args:
      config: effective config (model must match ``init_encoder``'s).
      tokenizer: tokenizer of the pre-trained model (or of ``config.data`` for ``--init none``).
      task, train, dev: from :func:`electra_tf.finetuning.tasks.read_file_task` or
        ``read_tfds_task``.
      output_dir: where the run(s) go.
      init_encoder: the pre-trained discriminator; None starts from random weights.
      init: description of the initialisation (``none`` or the model directory).
      echo: progress lines.

    Returns:
      A :class:`FinetuneResult`.
    """
    ft = config.validate().finetune
    seeds = parse_seeds(ft.seeds)
    t = time.time()
    train_features = encode_split(tokenizer, train, ft.seq_length)
    dev_features = encode_split(tokenizer, dev, ft.seq_length)
    echo(f"fine-tuning on {len(train)} examples ({_described(train)}), evaluating on "
         f"{len(dev)} ({_described(dev)}); {task.task_type}"
         + (f" over {len(task.labels)} labels" if task.labels else "")
         + f"; tokenized in {time.time() - t:.1f}s")
    runs = []
    for seed in seeds:
        run_dir = output_dir if len(seeds) == 1 else os.path.join(output_dir, f"seed_{seed}")
        runs.append(finetune_once(config, tokenizer, task, train_features, train.labels,
                                  dev_features, dev.labels, run_dir, seed, init_encoder, init,
                                  echo))
    main_metric = metrics_lib.MAIN_METRIC[task.task_type]
    medians = {which: _median([getattr(r, which) for r in runs]) for which in ("final", "best")}
    kept = runs[0].kept
    best = max(runs, key=lambda r: r.kept_metrics[main_metric])
    if len(seeds) > 1:
        with open(os.path.join(output_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump({"main_metric": main_metric, "kept": kept, "seeds": seeds,
                       "median": medians,
                       "runs": {str(r.seed): {"run_dir": r.run_dir, "final": r.final,
                                              "best": r.best} for r in runs},
                       "best_run": best.run_dir}, f, indent=2)
        for which in ("final", "best"):
            echo(f"median over seeds {seeds}, {which} epoch: {_describe(medians[which])}")
    return FinetuneResult(output_dir, runs, medians["final"], medians["best"], kept,
                          best.run_dir)
