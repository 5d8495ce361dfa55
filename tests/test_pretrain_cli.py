"""``python -m electra_tf.pretrain``: help, flag and data errors, a damaged shard named.
(The kill -9 test in test_training.py and the multi-worker test run the CLI end to end.)"""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from electra_tf import config_io, pretrain
from electra_tf.tokenizer import Tokenizer


def test_help_lists_every_set_key_without_loading_tensorflow():
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from electra_tf import pretrain; "
         "sys.argv[0] = 'pretrain'; pretrain.build_parser().print_help(); "
         "print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for row in config_io.override_keys():
        assert row in run.stdout
    assert "train.batch_size (int, default 128)" in run.stdout
    assert "train.steps_per_loop (int, default 1)" in run.stdout
    assert "finetune." not in run.stdout and "layerwise_lr_decay" not in run.stdout
    assert "{cpu,gpu,mirrored,multi_worker,tpu}" in run.stdout
    assert run.stdout.strip().endswith("False")  # --help is instant: no TensorFlow import


def test_bad_set_key_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--config", "debug_tiny", "--data", "x", "--model_dir", "y",
                       "--set", "train.num_step=5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.num_step'" in err and "num_steps" in err


def test_unfinished_data_is_an_error_naming_the_directory(tmp_path, capsys, corpus_examples,
                                                           write_data):
    tokenizer = Tokenizer()
    write_data(tmp_path / "data", tokenizer, corpus_examples(tokenizer, 8), num_shards=1,
               completed=False)
    # A fine-tuning key typed as before the split still parses: one line says where it went.
    code = pretrain.main(["--config", "debug_tiny", "--data", str(tmp_path / "data"),
                          "--model_dir", str(tmp_path / "run"), "--set", "finetune.epochs=5"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'data'}: no COMPLETED marker" in err
    assert "deprecated: --set: finetune moved to the fine-tuning config" in err


def test_damaged_shard_stops_training_with_its_name(tmp_path, capsys, corpus_examples,
                                                    write_data):
    tokenizer = Tokenizer()
    pattern = write_data(tmp_path / "data", tokenizer, corpus_examples(tokenizer, 64),
                         num_shards=2)
    damaged = sorted(tf.io.gfile.glob(pattern))[1]
    raw = bytearray(open(damaged, "rb").read())
    raw[200] ^= 0xFF  # inside the first record
    open(damaged, "wb").write(bytes(raw))
    code = pretrain.main(["--config", "debug_tiny", "--data", pattern,
                          "--model_dir", str(tmp_path / "run"), "--set", "model.num_layers=1",
                          "--set", "train.num_steps=4"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"damaged TFRecord shard(s): {damaged}: corrupted record" in err
    assert "--skip_corrupt" in err
    assert not os.path.exists(os.path.join(tmp_path, "run", "ckpt-4.index"))
