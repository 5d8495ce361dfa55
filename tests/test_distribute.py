"""Strategies through the real training loop: mirrored on two logical CPUs equals one device;
two local MultiWorkerMirroredStrategy processes train and checkpoint (chief writes only)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from electra_tf import pretrain
from electra_tf.tokenizer import Tokenizer
from electra_tf.training import distribute

# One layer and no dropout: the 1-device and 2-replica runs must compute the same numbers.
OVERRIDES = ("model.num_layers=1", "model.dropout_rate=0.0", "model.attention_dropout_rate=0.0",
             "train.num_steps=3", "train.checkpoint_every=2", "train.log_every=1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, corpus_examples, write_data):
    tokenizer = Tokenizer()
    directory = tmp_path_factory.mktemp("data")
    write_data(directory, tokenizer, corpus_examples(tokenizer, 96))
    return str(directory)


def read_log(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def model_weights(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint)
            if name.startswith("model/")}


def test_strategies_by_name():
    assert pretrain.STRATEGIES == distribute.STRATEGIES  # the CLI's --strategy choices
    cpu = distribute.make_strategy("cpu")
    assert isinstance(cpu, tf.distribute.OneDeviceStrategy)
    assert distribute.is_chief(cpu) and distribute.uses_global_iterator(cpu)
    assert distribute.worker_id(cpu) == "local_0"
    with pytest.raises(distribute.StrategyError, match="unknown strategy 'gpus'; expected"):
        distribute.make_strategy("gpus")
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(distribute.StrategyError, match="sees no GPU"):
            distribute.make_strategy("gpu")


def test_mirrored_two_cpus_match_one_device_through_the_loop(data_dir, tmp_path):
    script = textwrap.dedent(f"""
        from electra_tf import config_io
        from electra_tf.training import distribute, loop
        distribute.split_cpu(2)  # before TensorFlow initializes its devices
        cfg = config_io.load_config("debug_tiny", {OVERRIDES!r})
        for name in ("cpu", "mirrored"):
            strategy = distribute.make_strategy(name)
            print(name, strategy.num_replicas_in_sync)
            loop.run_pretraining(cfg, {data_dir!r}, {str(tmp_path)!r} + "/" + name,
                                 strategy, echo=lambda line: None)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cpu 1" in run.stdout and "mirrored 2" in run.stdout
    one, two = (read_log(tmp_path / name) for name in ("cpu", "mirrored"))
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        for key in ("loss", "generator_loss", "discriminator_loss", "gradient_norm"):
            np.testing.assert_allclose(b[key], a[key], rtol=2e-5, err_msg=key)
        for key in ("generator_accuracy", "discriminator_precision", "replaced_fraction"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), key  # same masks and samples
    weights_one, weights_two = (model_weights(tmp_path / name / "ckpt-3")
                                for name in ("cpu", "mirrored"))
    assert sorted(weights_one) == sorted(weights_two) and len(weights_one) > 40
    for name, value in weights_one.items():
        np.testing.assert_allclose(weights_two[name], value, atol=2e-5, err_msg=name)
    # The first update moved the weights: equality is not trivial.
    assert not np.array_equal(
        weights_one["model/embeddings/word_embeddings/.ATTRIBUTES/VARIABLE_VALUE"],
        model_weights(tmp_path / "cpu" / "ckpt-2")[
            "model/embeddings/word_embeddings/.ATTRIBUTES/VARIABLE_VALUE"])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_train_and_checkpoint(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    command = [sys.executable, "-m", "electra_tf.pretrain", "--config", "debug_tiny",
               "--data", os.path.join(data_dir, "train-*"), "--model_dir", model_dir,
               "--strategy", "multi_worker"]
    for item in OVERRIDES:
        command += ["--set", item]
    processes = []
    for index in range(2):
        temp = tmp_path / f"tmp{index}"
        temp.mkdir()
        env = dict(os.environ, TMPDIR=str(temp), TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "step 3/3" in outputs[0] and "step 3/3" not in outputs[1]  # the chief logs
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-3")
    assert [r["step"] for r in read_log(model_dir)] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in read_log(model_dir))
    assert os.listdir(tmp_path / "tmp1") == []  # the worker's checkpoints went to a temp dir
    assert os.path.isdir(os.path.join(model_dir, "pretrained"))
