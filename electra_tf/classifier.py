"""Fine-tuning a discriminator for sequence classification or regression.

The task model is the reference's (google-research/electra ``finetune/classification``): the
encoder's first-token ([CLS]) hidden state → dropout 0.1 → dense(num_labels), or dense(1) for
regression; softmax cross-entropy or mean squared error. The optimizer is pre-training's AdamW
(same warmup × linear decay schedule, weight decay, clipping) with layer-wise learning-rate
decay ``lr · d^(L + 2 − depth)``.

One fine-tuning run writes into its directory::

    config.yaml, config.json   effective config (+ tokenizer settings, init, seed)
    vocab.txt, tokenizer.json  the tokenizer, so the run is self-contained
    label_map.json             task type, labels (id = position), column names
    classifier.weights.h5      encoder + head weights of the best dev epoch
    metrics.json               dev metrics of every epoch and of the best one
    train/, dev/               TensorBoard scalars

With several seeds each run goes to ``DIR/seed_N`` and ``DIR/summary.json`` holds every run's
best metrics and their median (the paper reports medians over seeds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from electra_tf import metrics as metrics_lib
from electra_tf.config import Config, ConfigError, load_saved_config, save_config
from electra_tf.embeddings import derive_seed
from electra_tf.encoder import ElectraEncoder
from electra_tf.heads import ClassificationHead
from electra_tf.optimization import apply_gradients, build_optimizer, layerwise_lr_multipliers
from electra_tf.tasks import Split, TaskInfo
from electra_tf.tokenizer import Tokenizer

WEIGHTS_FILE = "classifier.weights.h5"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
EVAL_BATCH_SIZE = 128


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraClassifier(keras.Model):
    """Encoder + :class:`~electra_tf.heads.ClassificationHead`.

    Args:
      encoder: an :class:`~electra_tf.encoder.ElectraEncoder`.
      num_outputs: number of classes, or 1 for regression.
      dropout_rate: dropout on the [CLS] vector.
      seed: seed of the head's initializer and dropout stream.

    Call args:
      inputs: dict with ``token_ids``, ``segment_ids``, ``padding_mask``, int [batch, seq].
      training: Python bool, enables dropout.

    Returns:
      logits, float32 [batch, num_outputs] (regression: [batch, 1], the score).
    """

    def __init__(self, encoder: ElectraEncoder, num_outputs: int, dropout_rate: float = 0.1,
                 seed: int = 0, **kwargs):
        kwargs.setdefault("name", "electra_classifier")
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_outputs = int(num_outputs)
        self.dropout_rate = float(dropout_rate)
        self.seed = int(seed)
        self.head = ClassificationHead(
            self.num_outputs, dropout_rate=self.dropout_rate,
            initializer_range=encoder.model_config.initializer_range, seed=self.seed,
            name="classification_head")

    def build(self, inputs_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.head.build((None, None, self.encoder.model_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        return self.head(self.encoder(inputs, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"encoder": keras.saving.serialize_keras_object(self.encoder),
                       "num_outputs": self.num_outputs, "dropout_rate": self.dropout_rate,
                       "seed": self.seed})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def build_classifier(config: Config, num_outputs: int, seed: int,
                     encoder: Optional[ElectraEncoder] = None) -> ElectraClassifier:
    """A built classifier; a fresh, randomly initialised encoder (seeded) when none is given."""
    if encoder is None:
        encoder = ElectraEncoder(config.model, seed=derive_seed(seed, "encoder"))
    model = ElectraClassifier(encoder, num_outputs, config.finetune.dropout_rate,
                              seed=derive_seed(seed, "head"))
    model.build()
    return model


def copy_encoder_weights(source: ElectraEncoder, target: ElectraEncoder, where: str) -> None:
    """Assigns every trainable variable of ``source`` to ``target`` (same architecture).

    Only trainable variables are copied: the target keeps its own dropout seed streams, so each
    fine-tuning seed draws different dropout masks, as a differently seeded reference run does.
    """
    src, dst = source.trainable_variables, target.trainable_variables
    if len(src) != len(dst):
        raise ConfigError(f"{where}: the pre-trained encoder has {len(src)} weight tensors, the "
                          f"fine-tuning config's model has {len(dst)}")
    for s, d in zip(src, dst):
        if tuple(s.shape) != tuple(d.shape):
            raise ConfigError(f"{where}: pre-trained weight {s.path} has shape {tuple(s.shape)}, "
                              f"the fine-tuning model expects {tuple(d.shape)} ({d.path})")
        d.assign(s)


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
class RunResult:
    """One seed's fine-tuning: its directory, the best epoch (1-based) and its dev metrics."""

    run_dir: str
    seed: int
    best_epoch: int
    best_metrics: dict
    epochs: list


def finetuning_optimizer_config(config: Config):
    """Pre-training's optimizer section with the fine-tuning rate, warmup, decay and d.

    The reference fine-tunes with AdamW whatever pre-training used.
    """
    ft = config.finetune
    return dataclasses.replace(
        config.optimizer, name="adamw", learning_rate=ft.learning_rate, warmup_steps=0,
        warmup_fraction=ft.warmup_fraction, weight_decay=ft.weight_decay,
        layerwise_lr_decay=ft.layerwise_lr_decay)


def _loss_fn(task_type: str):
    if task_type == "classification":
        return lambda labels, logits: tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return lambda labels, logits: tf.reduce_mean(tf.square(logits[:, 0] - labels))


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


def finetune_once(config: Config, tokenizer: Tokenizer, task: TaskInfo, train: dict,
                  train_labels: np.ndarray, dev: dict, dev_labels: np.ndarray, run_dir: str,
                  seed: int, init_encoder: Optional[ElectraEncoder] = None, init: str = "none",
                  echo: Callable[[str], None] = print) -> RunResult:
    """Fine-tunes one seed and writes the run directory (see the module docstring).

    Args:
      config: effective config; ``finetune`` holds rate, d, warmup, batch, epochs, length.
      tokenizer: the tokenizer the features were encoded with (copied into the run).
      task: labels and columns.
      train, dev: :func:`encode_split` features; ``train_labels``/``dev_labels`` [n].
      run_dir: output directory of this run.
      seed: seeds initialisation of the head (and the encoder under ``--init none``),
        dropout and the order of training examples.
      init_encoder: pre-trained encoder whose weights start the run; None = random init.
      init: where the weights came from (recorded in config.json).
      echo: receives one progress line per epoch.
    """
    ft = config.finetune
    model = build_classifier(config, task.num_outputs, seed)
    if init_encoder is not None:
        copy_encoder_weights(init_encoder, model.encoder, init)
    steps_per_epoch = -(-len(train_labels) // ft.batch_size)
    total_steps = steps_per_epoch * ft.epochs
    opt_config = finetuning_optimizer_config(config)
    multipliers = layerwise_lr_multipliers(model.encoder, model.head.trainable_variables,
                                           opt_config.layerwise_lr_decay)
    optimizer = build_optimizer(opt_config, total_steps, model, multipliers)
    variables = model.trainable_variables
    loss_fn = _loss_fn(task.task_type)
    label_dtype = tf.int32 if task.task_type == "classification" else tf.float32
    spec = tf.TensorSpec([None, ft.seq_length], tf.int32)

    features_spec = {k: spec for k in train}

    # No autograph: the step has no tensor-dependent Python control flow, and converting the
    # model's code costs seconds per run.
    @tf.function(input_signature=[features_spec, tf.TensorSpec([None], label_dtype)],
                 autograph=False)
    def train_step(batch, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(batch, training=True))
        apply_gradients(optimizer, tape.gradient(loss, variables), variables)
        return loss

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
        start, losses = time.time(), []
        for batch, labels in _batches(train, train_labels, ft.batch_size,
                                      rng.permutation(len(train_labels))):
            losses.append(float(train_step(batch, labels)))
            step += 1
            if step % config.train.log_every == 0 or step == total_steps:
                with writers["train"].as_default(step=step):
                    tf.summary.scalar("loss", np.mean(losses[-config.train.log_every:]))
                    tf.summary.scalar("learning_rate", float(optimizer.learning_rate))
        dev_metrics = task_metrics(task, dev_labels, predict_logits(predict, dev))
        with writers["dev"].as_default(step=step):
            for name, value in dev_metrics.items():
                tf.summary.scalar(name, value)
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                  "seconds": round(time.time() - start, 2), **dev_metrics}
        epochs.append(record)
        improved = best is None or dev_metrics[main_metric] > best[main_metric]
        if improved:
            best = record
            best_weights = [v.numpy() for v in model.weights]
        echo(f"  seed {seed} epoch {epoch}/{ft.epochs}: train loss {record['train_loss']:.4f} "
             f"({steps_per_epoch} steps, {record['seconds']:.1f}s) | dev "
             + " ".join(f"{k} {v:.4f}" for k, v in dev_metrics.items())
             + (" (best)" if improved else ""))
    for writer in writers.values():
        writer.close()
    # Keep the best epoch (by the task's main dev metric), as the paper's dev-set results do.
    for variable, value in zip(model.weights, best_weights):
        variable.assign(value)
    save_classifier(run_dir, config, tokenizer, task, model, {"init": init, "seed": seed})
    best_metrics = {k: v for k, v in best.items() if k not in ("seconds", "train_loss")}
    with open(os.path.join(run_dir, METRICS_FILE), "w", encoding="utf-8") as f:
        json.dump({"main_metric": main_metric, "best": best_metrics, "epochs": epochs,
                   "train_examples": int(len(train_labels)),
                   "dev_examples": int(len(dev_labels))}, f, indent=2)
    return RunResult(run_dir, seed, best["epoch"], best_metrics, epochs)


def save_classifier(run_dir: str, config: Config, tokenizer: Tokenizer, task: TaskInfo,
                    model: ElectraClassifier, extra: Optional[dict] = None) -> str:
    """Writes everything :func:`load_classifier` reads: config, vocabulary, tokenizer
    settings, label map and weights. ``extra`` (e.g. init and seed) goes into config.json.

    Returns:
      ``run_dir``.
    """
    os.makedirs(run_dir, exist_ok=True)
    save_config(config, run_dir, extra={"tokenizer": tokenizer.settings(), **(extra or {})})
    vocab = os.path.join(run_dir, "vocab.txt")
    if os.path.abspath(tokenizer.vocab_path) != os.path.abspath(vocab):
        shutil.copyfile(tokenizer.vocab_path, vocab)
    with open(os.path.join(run_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer.settings(), f, indent=2)
    task.save(run_dir)
    model.save_weights(os.path.join(run_dir, WEIGHTS_FILE))
    return run_dir


def load_classifier(run_dir: str) -> tuple[Config, Tokenizer, TaskInfo, ElectraClassifier]:
    """Rebuilds a fine-tuned classifier from its run directory (best epoch's weights)."""
    weights = os.path.join(run_dir, WEIGHTS_FILE)
    if not os.path.exists(weights):
        seeds = sorted(d for d in os.listdir(run_dir) if d.startswith("seed_")) \
            if os.path.isdir(run_dir) else []
        hint = (f"; it holds the runs {', '.join(seeds)} — pass one of them"
                f"{_best_run_hint(run_dir)}" if seeds else "")
        raise ConfigError(f"{run_dir}: no {WEIGHTS_FILE} (expected a fine-tuning run "
                          f"directory written by electra_tf.finetune){hint}")
    config = load_saved_config(run_dir)
    tokenizer = Tokenizer(os.path.join(run_dir, "vocab.txt"), lower_case=config.data.lower_case)
    with open(os.path.join(run_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer.check_settings(json.load(f), f"{run_dir}/tokenizer.json")
    task = TaskInfo.load(run_dir)
    model = build_classifier(config, task.num_outputs, seed=0)
    model.load_weights(weights)
    return config, tokenizer, task, model


def _best_run_hint(output_dir: str) -> str:
    path = os.path.join(output_dir, SUMMARY_FILE)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    return f", e.g. {summary['best_run']} (best dev {summary['main_metric']})"


# ---------------------------------------------------------------------------------------------
# Several seeds.

@dataclasses.dataclass
class FinetuneResult:
    """All runs of one fine-tuning command.

    Attributes:
      output_dir: the command's output directory.
      runs: one :class:`RunResult` per seed, in the order given.
      median: median over seeds of each best-epoch dev metric.
      best_run_dir: the run with the highest main dev metric (the one to export).
    """

    output_dir: str
    runs: list
    median: dict
    best_run_dir: str


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]``; names the bad item otherwise."""
    seeds = []
    for item in str(text).split(","):
        try:
            seeds.append(int(item.strip()))
        except ValueError:
            raise ConfigError(f"finetune.seeds={text!r}: {item.strip()!r} is not an integer "
                              "(expected comma-separated integers, e.g. 1,2,3)") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"finetune.seeds={text!r} repeats a seed")
    return seeds


def _described(split: Split) -> str:
    """The split's source, and the blank lines skipped, so the file's line count adds up."""
    blank = split.blank_lines
    return split.source + (f", {blank} blank line{'s' * (blank > 1)} skipped" if blank else "")


def run_finetuning(config: Config, tokenizer: Tokenizer, task: TaskInfo, train: Split,
                   dev: Split, output_dir: str, init_encoder: Optional[ElectraEncoder] = None,
                   init: str = "none", echo: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tunes once per seed of ``config.finetune.seeds`` and summarises.

    One seed writes its run into ``output_dir``; several write ``output_dir/seed_N`` each and
    ``output_dir/summary.json`` (every seed's best dev metrics and the median).

    Args:
      config: effective config (model must match ``init_encoder``'s).
      tokenizer: tokenizer of the pre-trained model (or of ``config.data`` for ``--init none``).
      task, train, dev: from :func:`electra_tf.tasks.read_file_task` or ``read_tfds_task``.
      output_dir: where the run(s) go.
      init_encoder: the pre-trained discriminator; None starts from random weights.
      init: description of the initialisation (``none`` or the model directory).
      echo: progress lines.

    Returns:
      A :class:`FinetuneResult`.
    """
    ft = config.finetune
    if ft.seq_length > config.model.max_position_embeddings:
        raise ConfigError(f"finetune.seq_length={ft.seq_length} exceeds "
                          f"model.max_position_embeddings={config.model.max_position_embeddings}")
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
    median = {k: statistics.median(r.best_metrics[k] for r in runs)
              for k in runs[0].best_metrics if k not in ("epoch", "step")}
    best = max(runs, key=lambda r: r.best_metrics[main_metric])
    if len(seeds) > 1:
        with open(os.path.join(output_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump({"main_metric": main_metric, "seeds": seeds, "median": median,
                       "runs": {str(r.seed): {"run_dir": r.run_dir, **r.best_metrics}
                                for r in runs},
                       "best_run": best.run_dir}, f, indent=2)
        echo(f"median over seeds {seeds}: "
             + " ".join(f"{k} {v:.4f}" for k, v in median.items()))
    return FinetuneResult(output_dir, runs, median, best.run_dir)
