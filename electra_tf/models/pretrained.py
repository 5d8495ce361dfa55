"""Saving and loading pre-trained ELECTRA encoders (the hand-off to fine-tuning).

Layout of a pre-trained model directory (docs/architecture.md)::

    DIR/config.yaml  DIR/config.json   effective config (electra_tf.config_io.save_config)
    DIR/vocab.txt                     copy of the vocabulary
    DIR/tokenizer.json                Tokenizer.settings()
    DIR/discriminator.weights.h5      ElectraEncoder weights (Keras 3 save_weights)
    DIR/generator.weights.h5          generator encoder + MLM head (optional)

Pre-training writes it to ``MODEL_DIR/pretrained/``; :func:`load_pretrained` accepts either
``MODEL_DIR`` or ``MODEL_DIR/pretrained``. Paths may be local or any ``tf.io.gfile`` file
system (``gs://``).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from electra_tf.config import Config
from electra_tf.config_io import load_saved_config, save_config
from electra_tf.models.encoder import ElectraEncoder
from electra_tf.models.heads import MaskedLanguageModel
from electra_tf.models.layers import derive_seed
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.tokenizer import Tokenizer

DISCRIMINATOR_WEIGHTS = "discriminator.weights.h5"
GENERATOR_WEIGHTS = "generator.weights.h5"
VOCAB = "vocab.txt"
TOKENIZER_SETTINGS = "tokenizer.json"
SUBDIRECTORY = "pretrained"


def save_pretrained(directory: str, config: Config, tokenizer: Tokenizer,
                    discriminator: ElectraEncoder,
                    generator: Optional[MaskedLanguageModel] = None) -> str:
    """Writes config, vocabulary, tokenizer settings and weights into ``directory``.

    Args:
      directory: the output directory (created if needed; existing files are overwritten).
      config: the effective config of the run.
      tokenizer: the run's tokenizer (its vocabulary file is copied).
      discriminator: the encoder to fine-tune (``ElectraPretrainer.backbone``).
      generator: optionally ``ElectraPretrainer.masked_language_model()``.

    Returns:
      ``directory``.
    """
    tf.io.gfile.makedirs(directory)
    save_config(config, directory, extra={"tokenizer": tokenizer.settings()})
    # Contents, not a file copy: a copy keeps the packaged vocabulary's read-only mode, and
    # saving again into the same directory must overwrite it.
    with tf.io.gfile.GFile(tokenizer.vocab_path, "rb") as source:
        vocab = source.read()
    with tf.io.gfile.GFile(os.path.join(directory, VOCAB), "wb") as f:
        f.write(vocab)
    with tf.io.gfile.GFile(os.path.join(directory, TOKENIZER_SETTINGS), "w") as f:
        f.write(json.dumps(tokenizer.settings(), indent=2, sort_keys=True))
    discriminator.save_weights(os.path.join(directory, DISCRIMINATOR_WEIGHTS))
    if generator is not None:
        generator.save_weights(os.path.join(directory, GENERATOR_WEIGHTS))
    return directory


def resolve_pretrained_dir(directory: str) -> str:
    """``directory`` itself or its ``pretrained/`` subdirectory, whichever holds a model."""
    for candidate in (directory, os.path.join(directory, SUBDIRECTORY)):
        if tf.io.gfile.exists(os.path.join(candidate, DISCRIMINATOR_WEIGHTS)):
            return candidate
    raise FileNotFoundError(
        f"{directory}: no pre-trained model here (expected {DISCRIMINATOR_WEIGHTS} in it or in "
        f"{os.path.join(directory, SUBDIRECTORY)}, as written by save_pretrained / "
        "electra_tf.pretrain)")


def _load_config_and_tokenizer(directory: str) -> tuple[Config, Tokenizer]:
    config = load_saved_config(directory)
    tokenizer = Tokenizer(os.path.join(directory, VOCAB), lower_case=config.data.lower_case)
    with tf.io.gfile.GFile(os.path.join(directory, TOKENIZER_SETTINGS)) as f:
        tokenizer.check_settings(json.loads(f.read()),
                                 os.path.join(directory, TOKENIZER_SETTINGS))
    return config, tokenizer


def load_pretrained(directory: str) -> tuple[Config, Tokenizer, ElectraEncoder]:
    """Loads what :func:`save_pretrained` wrote.

    Args:
      directory: ``MODEL_DIR`` or ``MODEL_DIR/pretrained``.

    Returns:
      ``(config, tokenizer, encoder)``: the encoder is a stand-alone
      :class:`ElectraEncoder` of ``config.model`` with its own embeddings, built and loaded.

    Raises:
      FileNotFoundError: no pre-trained model in ``directory``.
      TokenizerError: the copied vocabulary does not match ``tokenizer.json``.
    """
    directory = resolve_pretrained_dir(directory)
    config, tokenizer = _load_config_and_tokenizer(directory)
    encoder = ElectraEncoder(config.model, seed=derive_seed(config.train.seed, "discriminator"),
                             name="discriminator")
    encoder.build()
    encoder.load_weights(os.path.join(directory, DISCRIMINATOR_WEIGHTS))
    return config, tokenizer, encoder


def load_generator(directory: str) -> MaskedLanguageModel:
    """Loads the generator (encoder + MLM head) saved beside the discriminator.

    Built by the training recipe (``objective.pretrainer.build_pretrainer`` of the saved config,
    which also builds the discriminator, then dropped): the same seeds, dtype policy, variable
    paths and one word table shared by the encoder and the head.

    Raises:
      FileNotFoundError: the directory has no ``generator.weights.h5``.
      TokenizerError: the copied vocabulary does not match ``tokenizer.json``.
    """
    directory = resolve_pretrained_dir(directory)
    path = os.path.join(directory, GENERATOR_WEIGHTS)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{directory}: no {GENERATOR_WEIGHTS} (save_pretrained was "
                                "called without a generator)")
    model = build_pretrainer(*_load_config_and_tokenizer(directory)).masked_language_model()
    model.load_weights(path)
    return model
