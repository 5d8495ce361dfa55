"""Shared by the interop tests: the fixture paths, golden arrays, the tiny config as ``--set``
overrides, the converter CLI, and both sides' outputs on the golden inputs.

These tests need torch and transformers 4.x, which electra_tf never imports: they run only in the
venv of ``make test-interop`` (tools/interop_env.sh), never under ``make test``.
"""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402  (before torch: both bundle native libraries)
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "data", "interop")
VOCAB = os.path.join(FIXTURES, "vocab.txt")

# The fixtures' model (tests/data/make_interop_fixtures.py) in electra_tf's config keys.
TINY_CONFIG = "debug_tiny"
TINY_OVERRIDES = (
    "model.vocab_size=128", "model.embedding_size=16", "model.hidden_size=32",
    "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
    "model.max_position_embeddings=32", "model.type_vocab_size=2",
    "model.layer_norm_epsilon=1e-12", "generator.hidden_size=32", "generator.num_heads=2",
    "generator.intermediate_size=64",
)
INPUT_KEYS = ("token_ids", "segment_ids", "padding_mask")


@pytest.fixture(scope="session")
def golden():
    with np.load(os.path.join(FIXTURES, "golden.npz")) as data:
        return {k: data[k] for k in data.files}


def convert(*args: str) -> subprocess.CompletedProcess:
    """Runs ``python -m electra_tf.convert ARGS``; fails the test, with its output, unless 0."""
    result = subprocess.run([sys.executable, "-m", "electra_tf.convert", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"electra_tf.convert {' '.join(args)} exited {result.returncode}\n"
                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def config_flags(activation: str) -> list[str]:
    flags = ["--config", TINY_CONFIG, "--vocab", VOCAB]
    for override in TINY_OVERRIDES + (f"model.activation={activation}",):
        flags += ["--set", override]
    return flags


def hf_outputs(discriminator_dir: str, generator_dir: str, golden: dict) -> dict:
    """From ``transformers``' own loaders: what a user of the exported model gets.

    ``from_pretrained`` only warns about missing or unexpected weights; here either fails.
    """
    from transformers import ElectraForMaskedLM, ElectraForPreTraining, ElectraModel

    feed = dict(input_ids=torch.from_numpy(golden["token_ids"]).long(),
                token_type_ids=torch.from_numpy(golden["segment_ids"]).long(),
                attention_mask=torch.from_numpy(golden["padding_mask"]).long())
    outputs = {}
    for cls, directory in ((ElectraForPreTraining, discriminator_dir),
                           (ElectraModel, discriminator_dir),
                           (ElectraForMaskedLM, generator_dir)):
        model, info = cls.from_pretrained(directory, output_loading_info=True)
        ignorable = {"discriminator_predictions"} if cls is ElectraModel else set()
        unexpected = [k for k in info["unexpected_keys"] if k.split(".")[0] not in ignorable]
        assert not info["missing_keys"] and not unexpected and not info["mismatched_keys"], (
            f"{cls.__name__}.from_pretrained({directory}): {info}")
        with torch.no_grad():
            out = model.eval()(**feed, output_hidden_states=cls is not ElectraModel)
        if cls is ElectraModel:
            outputs["model_hidden"] = out.last_hidden_state.numpy()
        elif cls is ElectraForPreTraining:
            outputs["disc_hidden"] = out.hidden_states[-1].numpy()
            outputs["rtd_logits"] = out.logits.numpy()
        else:
            outputs["gen_hidden"] = out.hidden_states[-1].numpy()
            outputs["mlm_logits"] = out.logits.numpy()
    return outputs


def electra_tf_outputs(model_dir: str, golden: dict) -> dict:
    """electra_tf's outputs for the converter's ``import`` output directory.

    Encoders and MLM head from ``MODEL_DIR/pretrained`` (the fine-tuning hand-off), the RTD head
    from ``MODEL_DIR``'s checkpoint (what ``electra_tf.pretrain --init_from`` restores).
    """
    from electra_tf.models.pretrained import load_generator, load_pretrained
    from electra_tf.objective.pretrainer import build_pretrainer
    from electra_tf.training.checkpointing import model_state

    inputs = {k: tf.constant(golden[k]) for k in INPUT_KEYS}
    config, tokenizer, encoder = load_pretrained(model_dir)
    mlm = load_generator(model_dir)
    batch, seq = golden["token_ids"].shape
    positions = tf.constant(np.tile(np.arange(seq, dtype=np.int32), (batch, 1)))

    pretrainer = build_pretrainer(config, tokenizer)
    checkpoint = tf.train.latest_checkpoint(model_dir)
    assert checkpoint, f"{model_dir}: no checkpoint written by import"
    tf.train.Checkpoint(model=model_state(pretrainer)).restore(
        checkpoint).assert_existing_objects_matched()
    return {
        "disc_hidden": encoder(inputs).numpy(),
        "rtd_logits": pretrainer.rtd_head(pretrainer.discriminator(inputs)).numpy(),
        "gen_hidden": mlm.encoder(inputs).numpy(),
        "mlm_logits": mlm({**inputs, "positions": positions}).numpy(),
        "ckpt_disc_hidden": pretrainer.discriminator(inputs).numpy(),
    }


def max_diff(a, b, padding_mask) -> float:
    """Largest absolute difference over the non-padding tokens."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b)[padding_mask == 1].max())


# Plain functions handed out as fixtures (test files never import each other or conftest).
@pytest.fixture(scope="session", name="convert")
def _convert():
    """The converter CLI (``python -m electra_tf.convert``)."""
    return convert


@pytest.fixture(scope="session", name="config_flags")
def _config_flags():
    return config_flags


@pytest.fixture(scope="session", name="hf_outputs")
def _hf_outputs():
    return hf_outputs


@pytest.fixture(scope="session", name="electra_tf_outputs")
def _electra_tf_outputs():
    return electra_tf_outputs


@pytest.fixture(scope="session", name="max_diff")
def _max_diff():
    return max_diff
