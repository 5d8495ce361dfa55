"""Smoke test of benchmarks/ablation.py at its tiny budget (4 ELECTRA steps, 24 labels, one
seed) on a small slice of the corpus: every pre-training run, every fine-tuning cell, every
summary row and both plots; equal FLOPs between ELECTRA and MLM; a rerun reuses every cell.
Also the corpus-built tasks: balanced labels and no document in both splits."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "ablation.py")
CORPUS = os.path.join(REPO, "electra_tf", "resources", "corpus", "moby_dick.txt.gz")


def build_tiny_data(directory: str) -> None:
    """600 corpus lines through the Beam pipeline at the demo's sequence length (seconds)."""
    text = os.path.join(os.path.dirname(directory), "tiny.txt")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f, open(text, "w") as out:
        out.writelines(line for _, line in zip(range(600), f))
    subprocess.run([sys.executable, "-m", "pipelines.build_pretraining_data", "--input", text,
                    "--output_dir", directory, "--max_seq_length", "64", "--num_shards", "2",
                    "--validation_fraction", "0.2"], check=True, cwd=REPO, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def run(tmp_path, data_dir):
    return subprocess.run([sys.executable, SCRIPT, "--budget", "tiny", "--data", data_dir,
                           "--work_dir", str(tmp_path / "work"), "--output_dir",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_tiny_budget_writes_every_row_and_plot(tmp_path):
    data_dir = str(tmp_path / "data")
    build_tiny_data(data_dir)
    done = run(tmp_path, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("== pre-train") == 3
    out = tmp_path / "out"
    for plot in ("objectives.png", "generator.png"):
        assert (out / plot).stat().st_size > 10_000, plot
    result = json.loads((out / "ablation.json").read_text())
    assert result["budget"] == "tiny" and result["machine"]["cpu"] is not None
    assert "--budget tiny" in result["command"]

    runs = result["pretraining"]
    assert set(runs) == {"electra", "mlm", "electra_g0.25"}
    electra, mlm = runs["electra"], runs["mlm"]
    # Equal compute: the MLM run's extra steps make up for its cheaper step, within one step.
    assert mlm["steps"] > electra["steps"] == 4
    assert abs(mlm["total_flops"] - electra["total_flops"]) <= mlm["total_flops"] / mlm["steps"]
    assert runs["electra_g0.25"]["generator_hidden_size"] < electra["generator_hidden_size"]
    assert runs["electra_g0.25"]["flops_per_sequence"] < electra["flops_per_sequence"]
    for record in runs.values():
        assert record["temperature"] == 3.0
        assert 0.0 <= record["final_eval"].get("discriminator_auc", 0.5) <= 1.0

    cells = result["cells"]
    expected = {f"{init}/{task}/24/1" for init in ("none", "mlm", "electra")
                for task in ("author", "pairs")} | {"electra_g0.25/author/24/1"}
    assert set(cells) == expected
    for cell in cells.values():
        assert cell["reported_epoch"] == "final"
        assert cell["accuracy"] == cell["final_epoch"]["accuracy"]
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["dev_examples"] == 48
        assert cell["best_epoch"]["accuracy"] >= cell["accuracy"] - 1e-9

    rows = {(r["init"], r["task"], r["labels"]) for r in result["objectives"]}
    assert rows == {(i, t, 24) for i in ("none", "mlm", "electra") for t in ("author", "pairs")}
    for row in result["objectives"]:
        s = row["final_accuracy"]
        assert s["n"] == 1 and s["min"] == s["median"] == s["max"]
    generator = {(r["hidden_fraction"], r["task"]) for r in result["generator"]}
    assert generator == {(0.25, "author"), (0.5, "author")}
    assert all(r["replaced_token_auc"] is not None for r in result["generator"])

    # Resumable: the same command again trains nothing and keeps every number.
    again = run(tmp_path, data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "== pre-train" not in again.stdout and "final-epoch accuracy" not in again.stdout
    assert json.loads((out / "ablation.json").read_text())["cells"] == cells


def test_corpus_tasks_are_balanced_and_split_by_document(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import ablation_tasks

    party = ablation_tasks.build_party_task(str(tmp_path / "party"), train_per_label=50,
                                            dev_per_label=20)
    assert party["counts"] == {"train": {"Democratic": 50, "Republican": 50},
                               "dev": {"Democratic": 20, "Republican": 20}}
    pairs = ablation_tasks.build_pairs_task(str(tmp_path / "pairs"), train_pairs=60,
                                            dev_pairs=20)
    assert pairs["counts"]["train"] == {"different": 30, "same": 30}
    with open(pairs["train"], encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert header == ["text", "text_b", "label"] and len(rows) == 60
    train_text = {r[0] for r in rows} | {r[1] for r in rows}
    with open(pairs["dev"], encoding="utf-8") as f:
        next(f)
        dev_text = {t for line in f for t in line.rstrip("\n").split("\t")[:2]}
    assert not train_text & dev_text  # documents, hence passages, never in both splits
    again = ablation_tasks.build_party_task(str(tmp_path / "party2"), train_per_label=50,
                                            dev_per_label=20)
    assert open(again["train"]).read() == open(party["train"]).read()
