"""benchmarks/finetuning_gap.py's pieces: the word-table swaps build exactly the encoders they
name, and the naive Bayes reference scores a hand-checkable case."""

from __future__ import annotations

import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import finetuning_gap  # noqa: E402

from electra_tf.config_io import load_config  # noqa: E402
from electra_tf.finetuning.classifier import build_classifier  # noqa: E402
from electra_tf.finetuning.config import from_pretraining, packaged_defaults  # noqa: E402
from electra_tf.models.encoder import ElectraEncoder  # noqa: E402


def _weights(encoder) -> dict:
    """Weights by path below the encoder ("embeddings/word_embeddings", ...)."""
    return {v.path.split(encoder.name + "/", 1)[1]: v.numpy()
            for v in encoder.trainable_variables}


def test_swaps_take_the_word_table_or_everything_else_from_the_pretrained_encoder():
    model = load_config("debug_tiny").model
    pretrained = ElectraEncoder(model, seed=123, name="discriminator")
    pretrained.build()
    seed = 2
    # The random side is the encoder --init none builds for this seed.
    config = from_pretraining(load_config("debug_tiny"), packaged_defaults("debug_tiny"))
    random = _weights(build_classifier(config, 2, seed).encoder)
    trained = _weights(pretrained)
    word_table = "embeddings/word_embeddings"
    assert set(random) == set(trained) and word_table in random

    for variant, from_pretrained in (("", set(trained)), (":words_only", {word_table}),
                                     (":random_words", set(trained) - {word_table})):
        mixed = _weights(finetuning_gap.mixed_encoder(model, seed, pretrained, variant))
        for name, value in mixed.items():
            expected = trained[name] if name in from_pretrained else random[name]
            np.testing.assert_array_equal(value, expected, err_msg=f"{variant} {name}")
            # Every weight differs between the two sources (so the check above can fail),
            # except LayerNorm gains and biases that both start at 1 and 0.
            if not (np.all(trained[name] == random[name])):
                assert not np.array_equal(value, trained[name] if name not in from_pretrained
                                          else random[name]), name


def test_naive_bayes_on_a_hand_checkable_case():
    # Class 0 uses tokens 5 and 6, class 1 tokens 7 and 8; 1-3 are special and ignored.
    train = np.array([[1, 5, 5, 6, 2], [1, 6, 5, 2, 3], [1, 7, 8, 8, 2], [1, 8, 7, 2, 3]])
    train_y = np.array([0, 0, 1, 1])
    dev = np.array([[1, 5, 2, 3, 3], [1, 8, 8, 2, 3], [1, 6, 7, 5, 2], [1, 2, 3, 3, 3]])
    special = np.array([1, 2, 3])
    accuracy = finetuning_gap.naive_bayes_accuracy(train, train_y, dev, np.array([0, 1, 0, 0]),
                                                   2, special, vocab_size=10)
    # Dev 1-3 are decided by their words; dev 4 has none, so the (equal) priors tie and
    # argmax picks class 0.
    assert accuracy == 1.0
    wrong = finetuning_gap.naive_bayes_accuracy(train, train_y, dev, np.array([1, 0, 1, 1]),
                                                2, special, vocab_size=10)
    assert wrong == 0.0
