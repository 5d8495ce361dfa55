"""Configs: strict YAML, typed overrides, derived values, paper hyper-parameters."""

import dataclasses

import pytest
import yaml

from electra_tf import config as config_lib
from electra_tf import config_io
from electra_tf.config import ConfigError
from electra_tf.config_io import load_config


def test_packaged_configs_load_and_validate():
    names = config_io.packaged_config_names()
    for name in ("electra_small", "electra_base", "electra_large", "electra_small_released",
                 "debug_tiny", "demo"):
        assert name in names
        load_config(name)


@pytest.mark.parametrize("name, hidden, layers, heads, ffn, emb, gen_hidden, lr, batch, seq, steps", [
    ("electra_small", 256, 12, 4, 1024, 128, 64, 5e-4, 128, 128, 1_000_000),
    ("electra_base", 768, 12, 12, 3072, 768, 256, 2e-4, 256, 512, 766_000),
    ("electra_large", 1024, 24, 16, 4096, 1024, 256, 2e-4, 2048, 512, 400_000),
    ("electra_small_released", 256, 12, 4, 1024, 128, 256, 5e-4, 128, 512, 1_000_000),
])
def test_paper_hyperparameters(name, hidden, layers, heads, ffn, emb, gen_hidden, lr, batch,
                               seq, steps):
    c = load_config(name)
    m = c.model
    assert (m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.embedding_size) == (
        hidden, layers, heads, ffn, emb)
    gen = c.generator_model
    assert gen.hidden_size == gen_hidden and gen.num_layers == layers
    assert gen.num_heads == max(1, gen_hidden // 64) and gen.intermediate_size == 4 * gen_hidden
    assert (c.optimizer.learning_rate, c.train.batch_size, c.data.seq_length,
            c.train.num_steps) == (lr, batch, seq, steps)
    assert (m.vocab_size, c.optimizer.weight_decay, c.optimizer.beta_2, c.optimizer.epsilon,
            c.optimizer.clip_norm, c.optimizer.warmup_steps) == (30522, 0.01, 0.999, 1e-6, 1.0,
                                                                 10000)
    assert c.objective.discriminator_weight == 50.0 and not c.optimizer.bias_correction


def test_max_predictions_follows_the_reference_formula():
    # int((mask_prob + 0.005) * seq_length), as google-research/electra configure_pretraining.py.
    assert load_config("electra_small").max_predictions == 19
    assert load_config("electra_base").max_predictions == 79
    assert load_config("electra_large").max_predictions == 130  # 25% masking
    assert load_config("electra_small", ["objective.max_predictions=20"]).max_predictions == 20


def test_misspelled_key_names_key_and_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    msg = str(e.value)
    assert "model.hiden_size" in msg and "hidden_size" in msg and str(path) in msg
    path.write_text("modle:\n  hidden_size: 64\n")
    with pytest.raises(ConfigError, match="'modle'.*model, generator"):
        load_config(str(path))


def test_wrong_types_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_size: 12.5\n")
    with pytest.raises(ConfigError, match=r"train.batch_size=12.5 has type float, expected int"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"train.num_steps='ten' has type str, expected int"):
        load_config("debug_tiny", ["train.num_steps=ten"])
    with pytest.raises(ConfigError, match="expected bool"):
        load_config("debug_tiny", ["train.jit_compile=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config("debug_tiny", ["train.num_steps"])
    with pytest.raises(ConfigError, match="unknown config key 'train.num_step'"):
        load_config("debug_tiny", ["train.num_step=3"])


def test_overrides_apply_and_revalidate():
    c = load_config("debug_tiny", ["train.num_steps=7", "optimizer.learning_rate=2e-3",
                                   "generator.hidden_size=8", "data.vocab_path=/x/v.txt"])
    assert c.train.num_steps == 7 and c.optimizer.learning_rate == 2e-3
    assert c.generator_model.hidden_size == 8 and c.data.vocab_path == "/x/v.txt"
    with pytest.raises(ConfigError, match="not divisible"):
        load_config("debug_tiny", ["model.num_heads=3"])
    with pytest.raises(ConfigError, match="objective.objective='rtd' is not one of electra, mlm"):
        load_config("debug_tiny", ["objective.objective=rtd"])
    with pytest.raises(ConfigError, match="exceeds model.max_position_embeddings"):
        load_config("debug_tiny", ["data.seq_length=128"])


def test_saved_config_roundtrips(tmp_path):
    c = load_config("demo", ["train.seed=5"])
    config_io.save_config(c, str(tmp_path), extra={"tokenizer": {"lower_case": True}})
    assert config_io.load_saved_config(str(tmp_path)) == c
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["train"]["seed"] == 5
    assert "derived" in (tmp_path / "config.json").read_text()


def test_configs_are_frozen():
    c = load_config("debug_tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train.num_steps = 3


def test_override_keys_cover_every_field():
    keys = config_io.override_keys()
    assert any(k.startswith("train.num_steps (int") for k in keys)
    assert any(k.startswith("train.batch_size") for k in keys)
    assert len(keys) == sum(len(dataclasses.fields(f.type if isinstance(f.type, type) else
                                                   getattr(config_lib, f.type)))
                            for f in dataclasses.fields(config_lib.Config))


def test_train_steps_per_loop_is_validated():
    assert load_config("debug_tiny").train.steps_per_loop == 1
    assert load_config("debug_tiny", ["train.steps_per_loop=100"]).train.steps_per_loop == 100
    with pytest.raises(ConfigError, match=r"train.steps_per_loop=0 must be >= 1"):
        load_config("debug_tiny", ["train.steps_per_loop=0"])


# ---------------------------------------------------------------------------------------------
# The split: pre-training's Config and fine-tuning's FinetuningConfig.

FIXTURE = "tests/data/checkpoint_fixture"  # a config.yaml written before the split


def test_packaged_configs_are_pretraining_configs_only(capsys):
    for name in config_io.packaged_config_names():
        load_config(name)
    assert capsys.readouterr().err == ""  # no deprecation line for what ships
    assert not any(f.name == "finetune" for f in dataclasses.fields(config_lib.Config))
    assert "layerwise_lr_decay" not in {f.name for f in
                                        dataclasses.fields(config_lib.OptimizerConfig)}


def test_old_pretraining_files_load_with_one_line_saying_where_keys_moved(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  hidden_size: 64\n  num_heads: 2\n"
                   "optimizer:\n  learning_rate: 3.0e-4\n  layerwise_lr_decay: 0.8\n"
                   "finetune:\n  epochs: 5\n")
    config = load_config(str(old))
    assert config.model.hidden_size == 64 and config.optimizer.learning_rate == 3e-4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"deprecated: {old}: finetune moved to the "
                                               "fine-tuning config")
    assert "optimizer.layerwise_lr_decay moved to finetune.layerwise_lr_decay" in err[0]
    # A saved model directory's config.yaml (the committed checkpoint fixture's).
    saved = config_io.load_saved_config(FIXTURE)
    assert saved.model.num_layers == 1 and saved.train.batch_size == 8
    assert "checkpoint_fixture/config.yaml: finetune moved" in capsys.readouterr().err
    # --set finetune.* on pre-training: dropped with one line (it never changed pre-training).
    c = load_config("debug_tiny", ["finetune.epochs=5", "train.num_steps=3"])
    assert c == load_config("debug_tiny", ["train.num_steps=3"])
    assert capsys.readouterr().err.count("deprecated: --set: finetune moved") == 1
    # Saving writes neither key.
    config_io.save_config(saved, str(tmp_path / "new"))
    written = yaml.safe_load((tmp_path / "new" / "config.yaml").read_text())
    assert "finetune" not in written and "layerwise_lr_decay" not in written["optimizer"]


def test_finetuning_config_per_size_defaults_and_overrides(capsys):
    from electra_tf.finetuning import config as ft

    tiny = ft.load_finetuning_config("debug_tiny")
    assert tiny.model == load_config("debug_tiny").model  # the shared ModelConfig
    assert (tiny.finetune.batch_size, tiny.finetune.epochs, tiny.finetune.seq_length) == (
        16, 2, 32)
    large = ft.load_finetuning_config("electra_large").finetune
    assert (large.learning_rate, large.layerwise_lr_decay) == (5e-5, 0.9)
    # ELECTRA-Small: the paper's fine-tuning table (the reference code has no Small rate).
    assert ft.load_finetuning_config("electra_small").finetune == ft.FinetuneConfig(
        learning_rate=3e-4)
    # A model pre-trained with a packaged config gets that size's defaults, whatever its vocab.
    demo = load_config("demo", ["model.vocab_size=1000", "train.num_steps=3"])
    assert ft.from_pretraining(demo).finetune.learning_rate == 1e-3
    assert ft.from_pretraining(load_config("demo", ["model.num_layers=3"])).finetune == (
        ft.FinetuneConfig(seq_length=128))
    c = ft.build_finetuning_config("debug_tiny", None, [
        "finetune.epochs=5", 'finetune.seeds="1,2"', "model.dropout_rate=0.2",
        "data.lower_case=false", "train.log_every=3"])
    assert (c.finetune.epochs, c.finetune.seeds, c.model.dropout_rate, c.data.lower_case,
            c.finetune.log_every) == (5, "1,2", 0.2, False, 3)
    assert capsys.readouterr().err.strip() == (
        "deprecated: --set: train.log_every is now finetune.log_every")
    with pytest.raises(ConfigError, match="'optimizer' is not a config section; sections: "
                                          "model, data, finetune"):
        ft.build_finetuning_config("debug_tiny", None, ["optimizer.beta_2=0.98"])
    with pytest.raises(ConfigError, match="unknown config key 'data.seq_length'; valid keys: "
                                          "vocab_path, lower_case"):
        ft.build_finetuning_config("debug_tiny", None, ["data.seq_length=16"])
    with pytest.raises(ConfigError, match="finetune.seq_length=128 exceeds "
                                          "model.max_position_embeddings=64"):
        ft.build_finetuning_config("debug_tiny", None, ["finetune.seq_length=128"])
    with pytest.raises(ConfigError, match="finetune.seeds='1,x': 'x' is not an integer"):
        ft.build_finetuning_config("debug_tiny", None, ["finetune.seeds=1,x"])
    with pytest.raises(ConfigError, match="finetune.epochs=0 must be >= 1"):
        ft.build_finetuning_config(None, None, ["finetune.epochs=0"])


def test_finetuning_config_from_saved_directories(tmp_path, capsys):
    from electra_tf.finetuning import config as ft

    # An old pre-trained model's finetune: section still gives fine-tuning its defaults.
    old = ft.build_finetuning_config(None, FIXTURE)
    assert old.model == config_io.load_saved_config(FIXTURE).model
    assert (old.finetune.batch_size, old.finetune.epochs, old.finetune.seq_length) == (16, 2, 32)
    assert old.data.vocab_path.endswith("checkpoint_fixture/vocab.txt")
    # A run directory: the fine-tuning config round-trips through config.yaml.
    run = ft.build_finetuning_config("demo", None, ["finetune.epochs=1"])
    config_io.save_config(run, str(tmp_path / "run"), extra={"seed": 1})
    assert set(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) == {
        "model", "data", "finetune"}
    assert ft.load_saved_finetuning_config(str(tmp_path / "run")) == run
    # A run written before the split: a whole pre-training config with its finetune: section.
    legacy = yaml.safe_load(open(f"{FIXTURE}/config.yaml").read())
    legacy["finetune"]["epochs"] = 4
    (tmp_path / "old_run").mkdir()
    (tmp_path / "old_run" / "config.yaml").write_text(yaml.safe_dump(legacy))
    assert ft.load_saved_finetuning_config(str(tmp_path / "old_run")).finetune.epochs == 4
    capsys.readouterr()
