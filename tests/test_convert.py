"""python -m electra_tf.convert: imports against reference outputs, bitwise round trips, and
every bad input reported at once.

Reference fixtures (tests/data/interop, written by tests/data/make_interop_fixtures.py with
transformers and TensorFlow's TF1 Saver): the tiny model's TF1 checkpoint, its Hugging Face
discriminator and generator, and transformers' outputs for it (golden.npz).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from electra_tf import convert
from electra_tf.config_io import load_config
from electra_tf.interop import commands, model_io, names
from electra_tf.interop.errors import ConvertError

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "interop")
# The fixtures' model (make_interop_fixtures.DISCRIMINATOR / GENERATOR) as --set items.
TINY = ["model.vocab_size=128", "model.embedding_size=16", "model.hidden_size=32",
        "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
        "model.max_position_embeddings=32", "generator.hidden_size=32", "generator.num_heads=2",
        "generator.intermediate_size=64", "data.seq_length=32"]
GOLDEN_TOLERANCE = 2e-5


def _fixtures():
    if not os.path.exists(os.path.join(FIXTURES, "golden.npz")):
        pytest.skip("tests/data/interop not generated yet (tests/data/make_interop_fixtures.py)")
    return FIXTURES


def _vocab(directory):
    path = os.path.join(directory, "vocab.txt")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(123)]
    with open(path, "w") as f:
        f.write("\n".join(words) + "\n")
    return path


def _random_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    return {p.ours: rng.normal(0.0, 0.3, p.shape).astype(np.float32)
            for p in names.parameters(config)}


def _write_tf1(prefix, tensors):
    """A name-based checkpoint, as TF1's Saver writes (names → tensors, no object graph)."""
    keys = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(tensors[k]) for k in keys])
    return prefix


def _ckpt(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k.split("/.ATTRIBUTES")[0]: reader.get_tensor(k)
            for k in reader.get_variable_to_shape_map() if "/.ATTRIBUTES" in k}


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A model directory of ours (pretrained/ + ckpt-0) with random N(0, 0.3) weights."""
    root = tmp_path_factory.mktemp("ours")
    config = load_config(None, TINY + ["model.activation=gelu_approximate"])
    weights = _random_weights(config)
    model_io.write_model(str(root / "model"), config, _vocab(root), weights, echo=lambda s: None)
    return str(root / "model"), config, weights


def _outputs(model, golden):
    batch = {k: golden[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    positions = np.tile(np.arange(batch["token_ids"].shape[1]), (len(batch["token_ids"]), 1))
    disc = model.discriminator(batch)
    gen = model.generator(batch)
    return {"disc_hidden": disc.numpy(), "rtd_logits": model.rtd_head(disc).numpy(),
            "gen_hidden": gen.numpy(), "mlm_logits": model.mlm_head(gen, positions).numpy()}


def _assert_golden(out_dir, golden, suffixes):
    _, _, _, model = model_io.read_model(out_dir, echo=lambda s: None)
    got = _outputs(model, golden)
    real = golden["padding_mask"].astype(bool)
    for name, key in suffixes.items():
        diff = np.abs(got[name] - golden[key])[real].max()
        assert diff <= GOLDEN_TOLERANCE, (key, diff)


def test_import_tf1_matches_transformers_and_keeps_the_optimizer(tmp_path):
    fixtures = _fixtures()
    out = str(tmp_path / "out")
    prefix = commands.import_model(
        "tf1", os.path.join(fixtures, "tf1"), out, None, TINY,
        vocab=os.path.join(fixtures, "vocab.txt"), with_optimizer=True, echo=lambda s: None)
    assert os.path.basename(prefix) == "ckpt-1234"
    assert tf.train.latest_checkpoint(out) == prefix
    golden = dict(np.load(os.path.join(fixtures, "golden.npz")))
    _assert_golden(out, golden, {"disc_hidden": "disc_hidden_gelu", "rtd_logits":
                                 "rtd_logits_gelu", "gen_hidden": "gen_hidden_gelu",
                                 "mlm_logits": "mlm_logits_gelu"})
    # Adam moments and the step, bitwise, under the names the training loop restores.
    written = _ckpt(prefix)
    assert written["optimizer/iteration"] == 1234
    source = tf.train.load_checkpoint(os.path.join(fixtures, "tf1", "model.ckpt-1234"))
    config = load_config(None, TINY)
    for p in names.parameters(config):
        slot = "electra_pretrainer_" + p.ours.replace("/", "_")
        for ours_suffix, tf1_suffix in (("_m", "adam_m"), ("_v", "adam_v")):
            np.testing.assert_array_equal(written[f"optimizer/{slot}{ours_suffix}"],
                                          source.get_tensor(f"{p.tf1}/{tf1_suffix}"))


@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
def test_import_hf_matches_transformers(tmp_path, activation):
    fixtures = _fixtures()
    out = str(tmp_path / "out")
    sets = [] if activation == "gelu" else ["model.activation=gelu_approximate"]
    commands.import_model("hf", os.path.join(fixtures, "hf_discriminator"), out, overrides=sets,
                          generator=os.path.join(fixtures, "hf_generator"), echo=lambda s: None)
    golden = dict(np.load(os.path.join(fixtures, "golden.npz")))
    # transformers' generator head is always erf GELU; ours follows model.activation, so the
    # tanh model is compared with the golden run whose head was switched to tanh too.
    mlm = "mlm_logits_gelu" if activation == "gelu" else "mlm_logits_gelu_new_tanh_head"
    _assert_golden(out, golden, {"disc_hidden": f"disc_hidden_{activation}",
                                 "rtd_logits": f"rtd_logits_{activation}",
                                 "gen_hidden": f"gen_hidden_{activation}", "mlm_logits": mlm})


def test_export_hf_has_transformers_layout_and_round_trips_bitwise(ours, tmp_path):
    model_dir, _, weights = ours
    hf = str(tmp_path / "hf")
    commands.export_model("hf", model_dir, hf, echo=lambda s: None)
    if os.path.exists(os.path.join(FIXTURES, "golden.npz")):
        for mine, theirs in (("discriminator", "hf_discriminator"),
                             ("generator", "hf_generator")):
            with safe_open(os.path.join(hf, mine, "model.safetensors"), "np") as f:
                metadata = f.metadata()
            with safe_open(os.path.join(FIXTURES, theirs, "model.safetensors"), "np") as f:
                assert metadata == f.metadata() == {"format": "pt"}
            got = load_file(os.path.join(hf, mine, "model.safetensors"))
            want = load_file(os.path.join(FIXTURES, theirs, "model.safetensors"))
            assert {k: (v.shape, v.dtype) for k, v in got.items()} == \
                {k: (v.shape, v.dtype) for k, v in want.items()}
            configs = [json.load(open(os.path.join(d, "config.json")))
                       for d in (os.path.join(hf, mine), os.path.join(FIXTURES, theirs))]
            assert sorted(configs[0]) == sorted(configs[1])
            skip = ("transformers_version", "hidden_act")
            assert {k: v for k, v in configs[0].items() if k not in skip} == \
                {k: v for k, v in configs[1].items() if k not in skip}
    back = str(tmp_path / "back")
    commands.import_model("hf", os.path.join(hf, "discriminator"), back,
                          generator=os.path.join(hf, "generator"), echo=lambda s: None)
    # Without a checkpoint there is no replaced-token head: an ElectraModel (no "electra.").
    shutil.copytree(os.path.join(model_dir, "pretrained"), tmp_path / "encoder_only")
    commands.export_model("hf", str(tmp_path / "encoder_only"), str(tmp_path / "hf_encoder"),
                          echo=lambda s: None)
    encoder_only = str(tmp_path / "hf_encoder" / "discriminator")
    keys = set(load_file(os.path.join(encoder_only, "model.safetensors")))
    assert "embeddings.word_embeddings.weight" in keys and not any(
        k.startswith(("electra.", "discriminator_predictions")) for k in keys)
    commands.import_model("hf", encoder_only, str(tmp_path / "back_encoder"),
                          echo=lambda s: None)
    got = model_io.read_model(str(tmp_path / "back_encoder"), echo=lambda s: None)[2]
    np.testing.assert_array_equal(got["discriminator/layer_1/output_dense/kernel"],
                                  weights["discriminator/layer_1/output_dense/kernel"])
    config, _, got, _ = model_io.read_model(back, echo=lambda s: None)
    assert config.model.activation == "gelu_approximate"
    assert sorted(got) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_export_keras_hub_matches_our_encoder_and_round_trips_bitwise(ours, tmp_path):
    import keras_hub
    from electra_tf.models.encoder import ElectraEncoder
    from electra_tf.interop.keras_hub import probe_batch

    model_dir, config, weights = ours
    preset = str(tmp_path / "preset")
    commands.export_model("keras_hub", model_dir, preset, echo=lambda s: None)
    backbone = keras_hub.models.ElectraBackbone.from_preset(preset)
    tokenizer = keras_hub.models.ElectraTokenizer.from_preset(preset)
    assert tokenizer.vocabulary_size() == 128
    _, _, _, model = model_io.read_model(model_dir, echo=lambda s: None)
    batch = probe_batch(config.model)
    real = batch["padding_mask"].astype(bool)
    theirs = np.asarray(backbone(batch)["sequence_output"])[real]
    assert np.abs(theirs - model.discriminator(batch).numpy()[real]).max() <= 1e-5
    # Negative control: the same weights with erf GELU are measurably different.
    erf = ElectraEncoder(load_config(None, TINY).model, name="discriminator")
    erf.build()
    erf.set_weights(model.backbone.get_weights())
    assert np.abs(theirs - erf(batch).numpy()[real]).max() > 1e-4

    back = str(tmp_path / "back")
    commands.import_model("keras_hub", preset, back, echo=lambda s: None)
    got = model_io.read_model(back, echo=lambda s: None)[2]
    encoder = {k: v for k, v in weights.items() if k.startswith(("embeddings/", "discriminator/"))}
    assert sorted(got) == sorted(encoder)
    for name, value in encoder.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def _tf1_tensors(config, weights):
    tensors = {p.tf1: weights[p.ours] for p in names.parameters(config)}
    tensors["global_step"] = np.array(7, np.int64)
    return tensors


def test_tf1_round_trip_of_our_weights_and_slots(ours, tmp_path):
    _, config, weights = ours
    tensors = _tf1_tensors(config, weights)
    rng = np.random.default_rng(1)
    for p in names.parameters(config):
        for slot in ("adam_m", "adam_v"):
            tensors[f"{p.tf1}/{slot}"] = rng.normal(0, 0.01, p.shape).astype(np.float32)
    prefix = _write_tf1(str(tmp_path / "model.ckpt-7"), tensors)
    vocab = _vocab(tmp_path)
    out = str(tmp_path / "out")
    commands.import_model("tf1", prefix, out, None, TINY + ["model.activation=gelu_approximate"],
                          vocab=vocab, with_optimizer=True, echo=lambda s: None)
    written = _ckpt(os.path.join(out, "ckpt-7"))
    for p in names.parameters(config):
        key = "model/" + p.ours.replace("/kernel", "/_kernel")
        np.testing.assert_array_equal(written[key], weights[p.ours], err_msg=p.ours)
        slot = "optimizer/electra_pretrainer_" + p.ours.replace("/", "_")
        np.testing.assert_array_equal(written[slot + "_m"], tensors[f"{p.tf1}/adam_m"])
    assert written["optimizer/iteration"] == 7
    # What electra_tf.pretrain --init_from does (model), and --init_optimizer (step, moments).
    from electra_tf.objective.pretrainer import build_pretrainer
    from electra_tf.training.checkpointing import model_state, optimizer_state
    from electra_tf.training.optimization import build_optimizer

    imported, tokenizer, _, _ = model_io.read_model(out, echo=lambda s: None)
    model = build_pretrainer(imported, tokenizer)
    optimizer = build_optimizer(imported.optimizer, imported.train.num_steps, model)
    tf.train.Checkpoint(model=model_state(model), optimizer=optimizer_state(optimizer)) \
        .restore(os.path.join(out, "ckpt-7")).assert_existing_objects_matched()
    assert int(optimizer.iterations.numpy()) == 7
    np.testing.assert_array_equal(model.generator.layer_1.query.kernel.numpy(),
                                  weights["generator/layer_1/query/kernel"])


def test_bad_tf1_checkpoint_lists_every_problem(ours, tmp_path):
    _, config, weights = ours
    tensors = _tf1_tensors(config, weights)
    del tensors["electra/encoder/layer_1/output/dense/bias"]                    # missing
    tensors["electra/encoder/layer_2/output/dense/bias"] = np.zeros(32, np.float32)  # unmapped
    tensors["generator_predictions/output_bias"] = np.zeros(128, np.int32)       # not float
    prefix = _write_tf1(str(tmp_path / "model.ckpt-7"), tensors)
    vocab = _vocab(tmp_path)
    with pytest.raises(ConvertError) as e:
        commands.import_model("tf1", prefix, str(tmp_path / "out"), None,
                              TINY + ["model.intermediate_size=32"], vocab=vocab,
                              echo=lambda s: None)
    text = str(e.value)
    assert ("electra/encoder/layer_0/intermediate/dense/kernel: [32, 64] in the checkpoint, "
            "[32, 32] expected (model.intermediate_size=32)") in text
    assert "--set model.intermediate_size=64" in text
    assert ("electra/encoder/layer_1/output/dense/bias: missing (electra_tf variable "
            "discriminator/layer_1/output_dense/bias; model.hidden_size=32)") in text
    assert ("electra/encoder/layer_2/output/dense/bias: not mapped (layer 2 does not exist "
            "with model.num_layers=2)") in text
    assert "generator_predictions/output_bias: dtype int32" in text
    assert "mlm_head/output_bias" in text
    assert not os.path.exists(tmp_path / "out")
    # --allow_unmapped logs the extra layer instead; the other problems remain.
    with pytest.raises(ConvertError) as e:
        commands.import_model("tf1", prefix, str(tmp_path / "out"), None, TINY, vocab=vocab,
                              allow_unmapped=True, echo=lambda s: None)
    assert "not mapped" not in str(e.value)
    assert "the checkpoint's discriminator has 3 layers, the config 2" in str(e.value)
    assert len(e.value.problems) == 3
    # A vocabulary of another model: both numbers and the file.
    with open(vocab, "a") as f:
        f.write("extra\n")
    with pytest.raises(ConvertError, match=r"vocab.txt: 129 lines, but "
                       r"electra/embeddings/word_embeddings has 128 rows"):
        commands.import_model("tf1", prefix, str(tmp_path / "out"), None,
                              TINY + ["model.vocab_size=128"], vocab=vocab, echo=lambda s: None)


def test_bad_hf_and_keras_hub_sources(ours, tmp_path):
    model_dir, _, _ = ours
    hf = str(tmp_path / "hf")
    commands.export_model("hf", model_dir, hf, echo=lambda s: None)
    disc, gen = os.path.join(hf, "discriminator"), os.path.join(hf, "generator")
    out = str(tmp_path / "out")
    # The generator's embeddings must be the discriminator's.
    tensors = load_file(os.path.join(gen, "model.safetensors"))
    tensors["electra.embeddings.LayerNorm.bias"] = tensors["electra.embeddings.LayerNorm.bias"] + 1
    save_file(tensors, os.path.join(gen, "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConvertError, match="electra.embeddings.LayerNorm.bias differs from the "
                       "discriminator's"):
        commands.import_model("hf", disc, out, generator=gen, echo=lambda s: None)
    # A config.json of another model.
    with open(os.path.join(disc, "config.json")) as f:
        data = json.load(f)
    with open(os.path.join(disc, "config.json"), "w") as f:
        json.dump(dict(data, model_type="bert"), f)
    with pytest.raises(ConvertError, match="model_type 'bert', 'electra' expected"):
        commands.import_model("hf", disc, out, echo=lambda s: None)
    # Pickled PyTorch weights only.
    with open(os.path.join(disc, "config.json"), "w") as f:
        json.dump(data, f)
    os.rename(os.path.join(disc, "model.safetensors"), os.path.join(disc, "pytorch_model.bin"))
    with pytest.raises(ConvertError, match="only pytorch_model.bin"):
        commands.import_model("hf", disc, out, echo=lambda s: None)
    # A keras-hub preset of another backbone.
    preset = str(tmp_path / "preset")
    os.makedirs(preset)
    with open(os.path.join(preset, "config.json"), "w") as f:
        json.dump({"class_name": "BertBackbone", "config": {}}, f)
    with pytest.raises(ConvertError, match="class_name 'BertBackbone', 'ElectraBackbone'"):
        commands.import_model("keras_hub", preset, out, echo=lambda s: None)
    assert not os.path.exists(out)


def test_cli_exit_codes(ours, tmp_path):
    with pytest.raises(SystemExit) as e:  # --generator belongs to import hf
        convert.main(["import", "tf1", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                      "--generator", str(tmp_path)])
    assert e.value.code == 2
    shutil.copytree(ours[0], tmp_path / "model")
    os.remove(tmp_path / "model" / "pretrained" / "vocab.txt")
    run = subprocess.run([sys.executable, "-m", "electra_tf.convert", "import", "tf1",
                          str(tmp_path / "model"), "--output_dir", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "error: " in run.stderr and "no vocabulary there; pass --vocab FILE" in run.stderr
