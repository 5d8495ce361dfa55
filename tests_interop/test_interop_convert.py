"""``python -m electra_tf.convert`` against transformers itself: the exported models load with
``ElectraForPreTraining`` / ``ElectraModel`` / ``ElectraForMaskedLM.from_pretrained`` and compute
what electra_tf computes (and what the golden arrays hold), max abs diff <= 2e-5 over the
non-padding tokens.

Each test runs the CLI as a user does: ``import`` a fixture into an electra_tf model directory,
``export hf`` it, then loads both sides. Skipped while electra_tf.convert does not exist.
"""

import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "data", "interop")
TOLERANCE = 2e-5


def _import_and_export(convert, config_flags, tmp_path, kind, source, activation, extra=()):
    model_dir, hf_dir = str(tmp_path / "electra_tf"), str(tmp_path / "hf")
    convert("import", kind, source, "--output_dir", model_dir, *config_flags(activation), *extra)
    convert("export", "hf", model_dir, "--output_dir", hf_dir)
    return model_dir, hf_dir


def _assert_close(got, expected, mask, max_diff, what):
    diff = max_diff(got, expected, mask)
    assert diff <= TOLERANCE, f"{what}: max abs diff {diff:.3g} > {TOLERANCE}"


def _check_erf_model(model_dir, hf_dir, golden, hf_outputs, electra_tf_outputs, max_diff):
    """Both sides equal each other and the golden arrays (model.activation=gelu)."""
    hf = hf_outputs(os.path.join(hf_dir, "discriminator"), os.path.join(hf_dir, "generator"),
                    golden)
    ours = electra_tf_outputs(model_dir, golden)
    mask = golden["padding_mask"]
    _assert_close(ours["ckpt_disc_hidden"], ours["disc_hidden"], mask, max_diff,
                  "checkpoint vs pretrained/ discriminator")
    for key, golden_key in (("disc_hidden", "disc_hidden_gelu"), ("rtd_logits", "rtd_logits_gelu"),
                            ("gen_hidden", "gen_hidden_gelu"), ("mlm_logits", "mlm_logits_gelu")):
        _assert_close(hf[key], ours[key], mask, max_diff, f"{key}: transformers vs electra_tf")
        _assert_close(ours[key], golden[golden_key], mask, max_diff, f"{key}: electra_tf vs golden")
    _assert_close(hf["model_hidden"], ours["disc_hidden"], mask, max_diff,
                  "ElectraModel vs electra_tf")


def test_hf_import_export_round_trip_in_transformers(tmp_path, golden, convert, config_flags,
                                                     hf_outputs, electra_tf_outputs, max_diff):
    model_dir, hf_dir = _import_and_export(
        convert, config_flags, tmp_path, "hf", os.path.join(FIXTURES, "hf_discriminator"), "gelu",
        ("--generator", os.path.join(FIXTURES, "hf_generator")))
    _check_erf_model(model_dir, hf_dir, golden, hf_outputs, electra_tf_outputs, max_diff)
    for which in ("discriminator", "generator"):
        with open(os.path.join(hf_dir, which, "config.json"), encoding="utf-8") as f:
            exported = json.load(f)
        with open(os.path.join(FIXTURES, f"hf_{which}", "config.json"), encoding="utf-8") as f:
            fixture = json.load(f)
        for key in ("model_type", "architectures", "hidden_act", "vocab_size", "embedding_size",
                    "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size",
                    "layer_norm_eps", "pad_token_id"):
            assert exported.get(key) == fixture[key], (which, key)


def test_tf1_import_export_in_transformers(tmp_path, golden, convert, config_flags, hf_outputs,
                                           electra_tf_outputs, max_diff):
    model_dir, hf_dir = _import_and_export(
        convert, config_flags, tmp_path, "tf1", os.path.join(FIXTURES, "tf1"), "gelu")
    _check_erf_model(model_dir, hf_dir, golden, hf_outputs, electra_tf_outputs, max_diff)


def test_gelu_approximate_export_in_transformers(tmp_path, golden, convert, config_flags,
                                                 hf_outputs, electra_tf_outputs, max_diff):
    """A tanh-GELU model: transformers runs it as ``gelu_new`` except its generator head, which
    is erf GELU whatever the config says; electra_tf uses one activation everywhere."""
    source = tmp_path / "source"
    for which in ("discriminator", "generator"):
        shutil.copytree(os.path.join(FIXTURES, f"hf_{which}"), source / which)
        path = source / which / "config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["hidden_act"] = "gelu_new"
        path.write_text(json.dumps(config), encoding="utf-8")
    model_dir, hf_dir = _import_and_export(
        convert, config_flags, tmp_path, "hf", str(source / "discriminator"), "gelu_approximate",
        ("--generator", str(source / "generator")))
    with open(os.path.join(hf_dir, "discriminator", "config.json"), encoding="utf-8") as f:
        assert json.load(f)["hidden_act"] in ("gelu_new", "gelu_pytorch_tanh")

    hf = hf_outputs(os.path.join(hf_dir, "discriminator"), os.path.join(hf_dir, "generator"),
                    golden)
    ours = electra_tf_outputs(model_dir, golden)
    mask = golden["padding_mask"]
    for key, golden_key in (("disc_hidden", "disc_hidden_gelu_new"),
                            ("rtd_logits", "rtd_logits_gelu_new"),
                            ("gen_hidden", "gen_hidden_gelu_new")):
        _assert_close(hf[key], ours[key], mask, max_diff, f"{key}: transformers vs electra_tf")
        _assert_close(ours[key], golden[golden_key], mask, max_diff, f"{key}: electra_tf vs golden")
    _assert_close(hf["model_hidden"], ours["disc_hidden"], mask, max_diff,
                  "ElectraModel vs electra_tf")
    # The one place the two differ, as the export's warning says.
    _assert_close(hf["mlm_logits"], golden["mlm_logits_gelu_new"], mask, max_diff,
                  "mlm_logits: transformers vs golden (erf head)")
    _assert_close(ours["mlm_logits"], golden["mlm_logits_gelu_new_tanh_head"], mask, max_diff,
                  "mlm_logits: electra_tf vs golden (tanh head)")
    assert max_diff(hf["mlm_logits"], ours["mlm_logits"], mask) > 1e-4
