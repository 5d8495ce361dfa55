"""The committed fixtures, read the way users read them (no converter needed).

``make test-interop`` first regenerates the fixtures and compares them with the committed ones
(tests/data/make_interop_fixtures.py --check); these tests look at them from the other side:
transformers' ``from_pretrained`` and electra_tf's tokenizer.
"""

import json
import os

import numpy as np
import tensorflow as tf

from electra_tf.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "data", "interop")


def test_hf_fixtures_from_pretrained_give_the_golden_outputs(golden, hf_outputs, max_diff):
    out = hf_outputs(os.path.join(FIXTURES, "hf_discriminator"),
                     os.path.join(FIXTURES, "hf_generator"), golden)
    mask = golden["padding_mask"]
    # Golden arrays were computed in float64; this forward pass runs in float32.
    for ours, key in (("disc_hidden", "disc_hidden_gelu"), ("model_hidden", "disc_hidden_gelu"),
                      ("rtd_logits", "rtd_logits_gelu"), ("gen_hidden", "gen_hidden_gelu"),
                      ("mlm_logits", "mlm_logits_gelu")):
        assert max_diff(out[ours], golden[key], mask) <= 2e-5, ours
    # The activations differ measurably: a converter that swaps them fails the 2e-5 bound.
    for act_key in ("rtd_logits", "gen_hidden", "mlm_logits"):
        gap = max_diff(golden[f"{act_key}_gelu"], golden[f"{act_key}_gelu_new"], mask)
        assert gap > 1e-4, act_key


def test_generator_embeddings_equal_the_discriminators():
    from safetensors.numpy import load_file

    disc = load_file(os.path.join(FIXTURES, "hf_discriminator", "model.safetensors"))
    gen = load_file(os.path.join(FIXTURES, "hf_generator", "model.safetensors"))
    shared = [k for k in gen if k.startswith("electra.embeddings.")]
    assert len(shared) == 5
    for key in shared:
        np.testing.assert_array_equal(gen[key], disc[key], err_msg=key)
    assert "generator_lm_head.weight" not in gen  # tied to the word embeddings


def test_golden_inputs_are_what_electra_tf_tokenizes():
    with open(os.path.join(FIXTURES, "versions.json"), encoding="utf-8") as f:
        texts = json.load(f)["texts"]
    golden = np.load(os.path.join(FIXTURES, "golden.npz"))
    tokenizer = Tokenizer(os.path.join(FIXTURES, "vocab.txt"), lower_case=True)
    seq = golden["token_ids"].shape[1]
    for row, (text_a, text_b) in enumerate(texts):
        encoded = tokenizer.encode(tf.constant([text_a]),
                                   None if text_b is None else tf.constant([text_b]), seq)
        for key in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(encoded[key].numpy()[0], golden[key][row],
                                          err_msg=f"row {row} {key}")


def test_tf1_checkpoint_layout():
    reader = tf.train.load_checkpoint(os.path.join(FIXTURES, "tf1"))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    assert reader.get_tensor("global_step") == 1234 and dtypes["global_step"] == tf.int64
    trained = {n for n in shapes if n != "global_step" and not n.endswith(("/adam_m", "/adam_v"))}
    assert {n for n in shapes if n.endswith("/adam_m")} == {f"{n}/adam_m" for n in trained}
    assert {n for n in shapes if n.endswith("/adam_v")} == {f"{n}/adam_v" for n in trained}
    assert {n.split("/")[0] for n in trained} == {
        "electra", "generator", "generator_predictions", "discriminator_predictions"}
    for name in ("electra/embeddings_project/kernel", "generator/embeddings_project/kernel"):
        assert shapes[name] == [16, 32], name
    for name in trained:
        assert dtypes[name] == tf.float32, name
        assert not np.array_equal(reader.get_tensor(name), reader.get_tensor(name + "/adam_m"))
        assert (reader.get_tensor(name + "/adam_v") >= 0).all(), name
