"""Smoke test of benchmarks/ablation.py at its tiny budget (4 ELECTRA steps, 24 labels, one
seed) on a small slice of the corpus, in this process: every pre-training run, every fine-tuning
cell, every summary row and both plots; equal FLOPs between ELECTRA and MLM; a rerun reuses
every cell. The default budget's plan (its extra pre-training rates) without training. Also the
corpus-built tasks: balanced labels and no document in both splits."""

from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import ablation  # noqa: E402
import ablation_tasks  # noqa: E402


def run(tmp_path, data_dir, capsys) -> str:
    assert ablation.main(["--budget", "tiny", "--data", data_dir, "--work_dir",
                          str(tmp_path / "work"), "--output_dir", str(tmp_path / "out")]) == 0
    return capsys.readouterr().out


def test_tiny_budget_writes_every_row_and_plot(tmp_path, tokenizer, corpus_examples, write_data,
                                               capsys):
    # Pre-training records at the demo config's sequence length, written as Beam writes them.
    data_dir = str(tmp_path / "data")
    write_data(data_dir, tokenizer, corpus_examples(tokenizer, 160, seq_length=64), num_shards=2)
    write_data(data_dir, tokenizer, corpus_examples(tokenizer, 40, seq_length=64, offset=400),
               num_shards=1, split="validation")
    stdout = run(tmp_path, data_dir, capsys)
    assert stdout.count("== pre-train") == 3
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
    assert mlm["steps"] > electra["steps"] == 4 and mlm["objective"] == "mlm"
    assert abs(mlm["total_flops"] - electra["total_flops"]) <= mlm["total_flops"] / mlm["steps"]
    assert runs["electra_g0.25"]["generator_hidden_size"] < electra["generator_hidden_size"]
    assert runs["electra_g0.25"]["flops_per_sequence"] < electra["flops_per_sequence"]
    for record in runs.values():
        assert record["temperature"] == 3.0
        assert 0.0 <= record["final_eval"].get("discriminator_auc", 0.5) <= 1.0

    cells = result["cells"]
    inits = ("none", "mlm", "electra")
    expected = ({f"{init}/era/24/1" for init in inits}
                | {"electra/author/24/1", "electra_g0.25/author/24/1"})
    assert set(cells) == expected
    for cell in cells.values():
        assert cell["reported_epoch"] == "final"
        assert cell["accuracy"] == cell["final_epoch"]["accuracy"]
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["dev_examples"] == 48
        assert cell["best_epoch"]["accuracy"] >= cell["accuracy"] - 1e-9

    rows = {(r["init"], r["task"], r["labels"]) for r in result["objectives"]}
    assert rows == {(i, "era", 24) for i in inits}
    for row in result["objectives"]:
        s = row["final_accuracy"]
        assert s["n"] == 1 and s["min"] == s["median"] == s["max"]
    generator = {(r["hidden_fraction"], r["task"]) for r in result["generator"]}
    assert generator == {(0.25, "author"), (0.5, "author")}
    assert all(r["replaced_token_auc"] is not None for r in result["generator"])

    # Resumable: the same command again trains nothing and keeps every number.
    again = run(tmp_path, data_dir, capsys)
    assert "== pre-train" not in again and "final-epoch accuracy" not in again
    assert json.loads((out / "ablation.json").read_text())["cells"] == cells


def test_default_plan_runs_both_objectives_at_both_rates_for_equal_flops():
    budget = ablation.BUDGETS["default"]
    runs = ablation.pretraining_runs(budget, ablation.EXPERIMENTS)
    assert runs["electra_lr0.0005"] == ("generator.hidden_fraction=0.5",
                                        "optimizer.learning_rate=0.0005")
    assert runs["mlm_lr0.0005"] == ("objective.objective=mlm", "optimizer.learning_rate=0.0005")
    assert ablation.pretraining_config(runs["mlm_lr0.0005"], 10).optimizer.learning_rate == 5e-4
    steps = ablation.plan_steps(budget, runs)
    assert steps["electra"] == steps["electra_lr0.0005"] == steps["electra_g1"] == 2000
    assert steps["mlm"] == steps["mlm_lr0.0005"] > 2000  # cheaper steps, same FLOPs
    assert ablation.objective_inits(budget) == ("none", "mlm", "mlm_lr0.0005", "electra",
                                                "electra_lr0.0005")


def test_corpus_tasks_are_balanced_and_split_by_document(tmp_path):
    party = ablation_tasks.build_party_task(str(tmp_path / "party"), train_per_label=50,
                                            dev_per_label=20)
    assert party["counts"] == {"train": {"Democratic": 50, "Republican": 50},
                               "dev": {"Democratic": 20, "Republican": 20}}
    era = ablation_tasks.build_era_task(str(tmp_path / "era"), train_per_label=40,
                                        dev_per_label=10)
    assert era["counts"] == {"train": {label: 40 for label in ablation_tasks.ERAS},
                             "dev": {label: 10 for label in ablation_tasks.ERAS}}
    assert [ablation_tasks.era_of(y) for y in (1860, 1861, 1933)] == list(ablation_tasks.ERAS)
    with open(era["train"], encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert header == ["text", "label"] and len(rows) == 120
    with open(era["dev"], encoding="utf-8") as f:
        next(f)
        dev_text = {line.split("\t")[0] for line in f}
    assert not {r[0] for r in rows} & dev_text  # documents, hence passages, never in both splits
    again = ablation_tasks.build_party_task(str(tmp_path / "party2"), train_per_label=50,
                                            dev_per_label=20)
    assert open(again["train"]).read() == open(party["train"]).read()
