"""Smoke test of benchmarks/learning_curves.py at a tiny budget (debug_tiny, 20 steps): every
side's rows, every plot and the JSON's keys. The Model Garden side runs where a peer Python
with tf-models-official exists (and must then agree with ours at step 0, before any update);
a rerun without one reuses the finished runs and records the skip with its reason."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "learning_curves.py")
CORPUS = os.path.join(REPO, "electra_tf", "resources", "corpus", "moby_dick.txt.gz")
PEER_PYTHON = os.environ.get("PEER_PYTHON", "/tmp/peers/bin/python")
SEED = 1234  # debug_tiny's train.seed, the default seed
EVAL_KEYS = ("generator_loss", "generator_accuracy", "discriminator_loss", "discriminator_auc",
             "discriminator_precision", "discriminator_recall", "replaced_fraction",
             "representation_cosine", "token_identity_auc")
PLOTS = ("generator_loss.png", "discriminator_loss.png", "auc.png", "precision_recall.png",
         "representation_cosine.png")


def build_tiny_data(directory: str) -> None:
    """600 corpus lines through our Beam pipeline (~1,300 train / ~600 validation examples of
    32 tokens): seconds, where the whole corpus takes a minute."""
    text = os.path.join(os.path.dirname(directory), "tiny.txt")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f, open(text, "w") as out:
        out.writelines(line for _, line in zip(range(600), f))
    subprocess.run([sys.executable, "-m", "pipelines.build_pretraining_data", "--input", text,
                    "--output_dir", directory, "--max_seq_length", "32", "--num_shards", "2",
                    "--validation_fraction", "0.2"], check=True, cwd=REPO, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def run_script(output_dir, data_dir, peer_python):
    command = [sys.executable, SCRIPT, "--config", "debug_tiny", "--steps", "20",
               "--eval_every", "10", "--eval_batches", "2", "--checkpoint_every", "10",
               "--data", str(data_dir), "--output_dir", str(output_dir),
               "--peer_python", str(peer_python)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(os.path.join(output_dir, "learning_curves.json")) as f:
        return run, json.load(f)


def test_learning_curves_smoke(tmp_path):
    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    build_tiny_data(str(data_dir))
    has_peer = os.path.exists(PEER_PYTHON)
    run, result = run_script(output_dir, data_dir, PEER_PYTHON if has_peer else
                             tmp_path / "no_peer_python")

    for key in ("command", "question", "plan", "seeds", "complete", "config", "data",
                "differences_by_design", "sides", "skipped", "summary", "verdict", "timings",
                "plots"):
        assert key in result, key
    assert result["complete"] is True
    assert result["plan"]["warmup_steps"] == 2  # 10% of the steps
    ran = ["ours", "ours_uniform"] + (["model_garden"] if has_peer else [])
    for side in ran:
        curve = result["sides"][side]["runs"][str(SEED)]
        assert curve["done"] and curve["step"] == 20, side
        assert [row["step"] for row in curve["train"]] == [10, 20], side
        assert [row["step"] for row in curve["eval"]] == [0, 10, 20], side
        for row in curve["eval"]:
            assert all(math.isfinite(row[k]) for k in EVAL_KEYS), (side, row)
            assert 0.0 <= row["discriminator_auc"] <= 1.0
            assert 0.0 <= row["token_identity_auc"] <= 1.0
        # The generator learns (from ln 30,522 = 10.33); Model Garden's bias-corrected Adam
        # moves it least within 20 steps (10.34 → 10.28).
        assert curve["eval"][-1]["generator_loss"] < curve["eval"][0]["generator_loss"] - 0.02
        assert curve["timings"]["steps_timed"] == 19 and curve["timings"]["train_s"] > 0
        assert curve["optimizer"]["decayed_variables"] < curve["optimizer"]["trainable_variables"]
        assert set(result["summary"][side]["final"]) == set(EVAL_KEYS)
        run_dir = output_dir / "work" / "runs" / side / f"seed_{SEED}"
        assert (run_dir / "curve.json").exists() and not (run_dir / "ckpt").exists()
    assert not result["sides"]["ours"]["runs"][str(SEED)]["optimizer"]["bias_correction"]
    for line in result["verdict"]["lines"]:
        assert line in run.stdout
    for name in PLOTS:
        with open(output_dir / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert sorted(result["plots"]) == sorted(PLOTS)

    if has_peer:
        # Same weights, masks and noise: the step-0 evaluations are the one-step parity.
        assert result["verdict"]["step0_eval_agrees"] is True, result["verdict"]
        assert "Adam with bias correction" in \
            result["sides"]["model_garden"]["runs"][str(SEED)]["optimizer"]["schedule"]
        # Without a peer the finished runs are reused (the same command continues; nothing is
        # left to do) and Model Garden is reported as skipped.
        run, result = run_script(output_dir, data_dir, tmp_path / "no_peer_python")
        assert "[ours seed 1234] already done" in run.stdout
    assert "no peer Python" in result["sides"]["model_garden"]["skipped"]
    assert "no peer Python" in result["skipped"]["model_garden"]
    assert "model_garden" not in result["summary"]
