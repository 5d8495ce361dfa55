"""One-step parity with TF Model Garden's ElectraPretrainer (benchmarks/parity_model_garden.py):
the mapping table covers our variables exactly once (always), and the full parity run agrees
(only where a peer Python with tf-models-official exists)."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from electra_tf.config_io import load_config
from electra_tf.objective.pretrainer import build_pretrainer
from electra_tf.tokenizer import Tokenizer

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "benchmarks", "parity_model_garden.py")


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location("parity_model_garden", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# debug_tiny's generator has no embedding projection (hidden 16 = embedding 16); a 32-wide
# generator has one, as ELECTRA-Small's.
@pytest.mark.parametrize("overrides", [(), ("generator.hidden_size=32",)])
def test_weight_export_and_mapping_table_cover_every_variable_once(parity, overrides):
    config = load_config("debug_tiny", (*parity.OVERRIDES, *overrides))
    model = build_pretrainer(config, Tokenizer())
    weights = parity.export_weights(model)
    table = parity.mapping_table(parity.model_spec(config))

    ours = [row["ours"] for row in table]
    assert sorted(ours) == sorted(weights) == sorted(v.path for v in model.trainable_variables)
    assert len(set(ours)) == len(ours)
    peer = collections.Counter(p for row in table for p in row["peer"])
    assert max(peer.values()) == 1, [p for p, n in peer.items() if n > 1]
    copies = {row["ours"].split("/", 1)[1]: len(row["peer"]) for row in table}
    # Model Garden ties the word table only: the other shared embeddings exist once per network.
    assert copies["embeddings/word_embeddings"] == 1
    for name in ("position_embeddings", "segment_embeddings", "layer_norm/gamma",
                 "layer_norm/beta"):
        assert copies[f"embeddings/{name}"] == 2
    assert set(copies.values()) == {1, 2}
    assert ("generator/embeddings_project/kernel" in copies) == bool(overrides)


def test_one_step_parity_with_model_garden(tmp_path):
    python = os.environ.get("PEER_PYTHON", "/tmp/peers/bin/python")
    if not os.path.exists(python):
        reason = (f"no peer Python at {python} (python -m venv /tmp/peers && "
                  "/tmp/peers/bin/pip install tf-models-official 'tensorflow==2.20.*')")
        print(reason)
        pytest.skip(reason)
    output = tmp_path / "parity.json"
    run = subprocess.run([sys.executable, SCRIPT, "--peer_python", python, "--output",
                          str(output)], capture_output=True, text=True, timeout=600)
    assert output.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    failed = [g["variable"] for g in result.get("gradients", []) if not g["ok"]]
    assert result["parity"] is True, (failed, result.get("losses"), result.get("peer_error"))
    assert run.returncode == 0
    assert len(result["gradients"]) == 80  # every trainable variable of debug_tiny
    for name, loss in result["losses"].items():
        assert loss["abs_diff"] <= 1e-5, name
    assert all(result["ids_equal"].values())
    # Both discriminator labels occur at masked positions: replaced and sampled-the-original.
    assert result["batch"]["replaced"] > 0 and result["batch"]["sampled_the_original"] > 0
