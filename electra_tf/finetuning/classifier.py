"""The fine-tuned classifier: an encoder with a classification head, and its run directory.

The task model is the reference's (google-research/electra ``finetune/classification``): the
encoder's first-token ([CLS]) hidden state → dropout 0.1 → dense(num_labels), or dense(1) for
regression, the dense kernel initialised glorot-uniform. It is trained by
:mod:`electra_tf.finetuning.loop`.

One fine-tuning run writes into its directory::

    config.yaml, config.json   effective fine-tuning config (+ tokenizer settings, init, seed)
    vocab.txt, tokenizer.json  the tokenizer, so the run is self-contained
    label_map.json             task type, labels (id = position), column names
    classifier.weights.h5      encoder + head weights after the last epoch (finetune.keep=last,
                               the reference's) or of the best dev epoch (keep=best)
    metrics.json               dev metrics of every epoch, the final and the best one
    train/, dev/               TensorBoard scalars

:func:`save_classifier` writes what :func:`load_classifier` reads (the loop writes
``metrics.json`` and the TensorBoard scalars). With several seeds each run goes to
``DIR/seed_N`` and ``DIR/summary.json`` holds every run's final and best metrics and their
medians.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import keras

from electra_tf.config import ConfigError
from electra_tf.config_io import save_config
from electra_tf.finetuning.config import FinetuningConfig, load_saved_finetuning_config
from electra_tf.finetuning.tasks import TaskInfo
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.models.heads import ClassificationHead
from electra_tf.models.layers import derive_seed, deserialize_nested, serialize_nested
from electra_tf.tokenizer import Tokenizer

WEIGHTS_FILE = "classifier.weights.h5"
SUMMARY_FILE = "summary.json"


@keras.saving.register_keras_serializable(package="electra_tf")
class ElectraClassifier(keras.Model):
    """Encoder + :class:`~electra_tf.models.heads.ClassificationHead`.

    Args:
      encoder: an :class:`~electra_tf.models.encoder.ElectraEncoder`.
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
        # Glorot-uniform kernel, as the reference's head (ClassificationHead's default).
        self.head = ClassificationHead(self.num_outputs, dropout_rate=self.dropout_rate,
                                       seed=self.seed, name="classification_head")

    def build(self, inputs_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.head.build((None, None, self.encoder.model_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        return self.head(self.encoder(inputs, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({**serialize_nested(encoder=self.encoder),
                       "num_outputs": self.num_outputs, "dropout_rate": self.dropout_rate,
                       "seed": self.seed})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, "encoder"))


def build_classifier(config: FinetuningConfig, num_outputs: int, seed: int,
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


def save_classifier(run_dir: str, config: FinetuningConfig, tokenizer: Tokenizer, task: TaskInfo,
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


def load_classifier(run_dir: str) -> tuple[FinetuningConfig, Tokenizer, TaskInfo,
                                           ElectraClassifier]:
    """Rebuilds a fine-tuned classifier from its run directory (the weights it saved: see
    ``finetune.keep`` in its config).

    A run written before fine-tuning had its own config (its ``config.yaml`` is a pre-training
    config with a ``finetune:`` section) loads too.
    """
    weights = os.path.join(run_dir, WEIGHTS_FILE)
    if not os.path.exists(weights):
        seeds = sorted(d for d in os.listdir(run_dir) if d.startswith("seed_")) \
            if os.path.isdir(run_dir) else []
        hint = (f"; it holds the runs {', '.join(seeds)} — pass one of them"
                f"{_best_run_hint(run_dir)}" if seeds else "")
        raise ConfigError(f"{run_dir}: no {WEIGHTS_FILE} (expected a fine-tuning run "
                          f"directory written by electra_tf.finetune){hint}")
    config = load_saved_finetuning_config(run_dir)
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
    return f", e.g. {summary['best_run']} (highest dev {summary['main_metric']})"
