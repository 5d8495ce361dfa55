"""Does pre-training pay, and which objective pays more for the same compute?

Two experiments on the `make demo` network (``electra_tf/configs/demo.yaml``: 2 layers, hidden
128, seq 64, batch 32) and the packaged corpus, preprocessed as ``make demo`` does it
(``examples.demo.preprocess``):

1. ``objectives``: ELECTRA (replaced-token detection, generator 1/2 width) and MLM pre-trained
   for the same training FLOPs, and no pre-training (random init), each fine-tuned on the
   labelled tasks of ``benchmarks/ablation_tasks.py`` (``author`` is the demo task) with few
   and many labels, several seeds. FLOPs count matrix products (2 per multiply-add), forward +
   backward = 3 × forward, per sequence (``benchmarks/train_throughput.py``):
   ELECTRA ``3 · (E(gen) + E(disc) + P · (2·Hg·e + 2·e·V) + S · (2·H·H + 2·H))``,
   MLM ``3 · (E(disc) + P · (2·H·e + 2·e·V))``, with ``E`` one encoder's forward FLOPs,
   ``P`` the masked positions, ``e`` the embedding width, ``V`` the vocabulary, ``S`` the
   sequence length. The MLM run gets ``round(steps · F_electra / F_mlm)`` steps. Both
   objectives are pre-trained at the demo config's rate (1e-3) and at ``EXTRA_RATES`` (5e-4),
   runs ``electra``, ``mlm``, ``electra_lr0.0005``, ``mlm_lr0.0005``.
2. ``generator``: ELECTRA with the generator at 1/8, 1/4, 1/2 and 1 × the discriminator's width
   (``generator.hidden_fraction``), the same number of steps each (FLOPs recorded per run):
   replaced-token AUC on the validation split at the end of pre-training, and fine-tuned
   accuracy on two tasks.

ELECTRA runs sample replacements at temperature 3 (the demo config's; at temperature 1 this
model returns to the all-original baseline, ``docs/validation.md``). Fine-tuning goes through
``electra_tf.finetuning.loop.finetune_once`` with the demo's packaged fine-tuning defaults
(``configs/finetuning/demo.yaml``) except the epochs (``FEW_LABEL_EPOCHS`` for small training
sets, whose 2 epochs are a handful of steps); every cell records the dev metrics of the final
epoch (reported) and of the best epoch.

Usage:
  python benchmarks/ablation.py [--budget tiny|small|default|long]
      [--output_dir benchmarks/results/ablation] [--work_dir /tmp/electra_ablation]
      [--data DIR] [--experiments objectives,generator] [--tables]

Resumable: every finished pre-training run and fine-tuning cell is kept (cells in
``OUTPUT_DIR/ablation.json``, models in ``WORK_DIR``); the same command again skips them. A
work directory of another budget is refused. Outputs: ``ablation.json`` (command, machine,
plan, every cell, summaries) and ``objectives.png``, ``generator.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHMARKS)
sys.path[:0] = [REPO, BENCHMARKS]

import ablation_tasks  # noqa: E402  (benchmarks/)
from result_files import read_json, write_json  # noqa: E402
from train_throughput import encoder_flops_per_sequence, training_flops_per_sequence  # noqa: E402

DEFAULT_OUTPUT_DIR = os.path.join(BENCHMARKS, "results", "ablation")
RESULT_FILE = "ablation.json"
EXPERIMENTS = ("objectives", "generator")
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
# Pre-training rates besides the demo config's 1e-3 in the objectives experiment, for both
# objectives: at 1e-3 the MLM run's own validation loss stalls (docs/ablation.md).
EXTRA_RATES = (5e-4,)
FEW_LABEL_EPOCHS = 10  # training sets of <= FEW_LABELS examples
FEW_LABELS = 500
TEMPERATURE = 3.0
# Budgets: ELECTRA pre-training steps (the MLM run gets the same FLOPs), label counts, seeds,
# tasks of each experiment, dev examples used (None: all 600).
BUDGETS = {
    "tiny": {"electra_steps": 4, "labels": (24,), "seeds": (1,), "tasks": ("era",),
             "generator_tasks": ("author",), "generator_labels": (24,),
             "fractions": (0.25, 0.5), "dev_examples": 48, "epochs": 1, "extra_rates": ()},
    "small": {"electra_steps": 600, "labels": (200, 3000), "seeds": (1, 2, 3),
              "tasks": ablation_tasks.TASKS, "generator_tasks": ("author", "era"),
              "generator_labels": (200,), "fractions": FRACTIONS, "dev_examples": None,
              "epochs": None, "extra_rates": EXTRA_RATES},
    "default": {"electra_steps": 2000, "labels": (200, 3000), "seeds": (1, 2, 3),
                "tasks": ablation_tasks.TASKS, "generator_tasks": ("author", "era"),
                "generator_labels": (200, 3000), "fractions": FRACTIONS, "dev_examples": None,
                "epochs": None, "extra_rates": EXTRA_RATES},
    "long": {"electra_steps": 6000, "labels": (200, 3000), "seeds": (1, 2, 3, 4, 5),
             "tasks": ablation_tasks.TASKS, "generator_tasks": ablation_tasks.TASKS,
             "generator_labels": (200, 3000), "fractions": FRACTIONS, "dev_examples": None,
             "epochs": None, "extra_rates": EXTRA_RATES},
}


# -- compute -----------------------------------------------------------------------------------

def mlm_training_flops_per_sequence(config) -> float:
    """Forward + backward matmul FLOPs of one ``objective: mlm`` sequence: the encoder of
    ``config.model`` and the MLM head at the ``max_predictions`` positions."""
    model = config.model
    forward = (encoder_flops_per_sequence(model, config.data.seq_length)
               + config.max_predictions * (2 * model.hidden_size * model.embedding_size
                                           + 2 * model.embedding_size * model.vocab_size))
    return 3.0 * forward


def flops_per_sequence(config) -> float:
    if config.objective.objective == "mlm":
        return mlm_training_flops_per_sequence(config)
    return training_flops_per_sequence(config)


def pretraining_runs(budget: dict, experiments) -> dict:
    """name → config overrides (beyond the step counts) of every pre-training run needed."""
    runs = {}
    if "objectives" in experiments:
        runs["electra"] = ("generator.hidden_fraction=0.5",)
        runs["mlm"] = ("objective.objective=mlm",)
        for rate in budget.get("extra_rates", ()):
            runs[f"electra_lr{rate:g}"] = (*runs["electra"], f"optimizer.learning_rate={rate:g}")
            runs[f"mlm_lr{rate:g}"] = (*runs["mlm"], f"optimizer.learning_rate={rate:g}")
    if "generator" in experiments:
        for fraction in budget["fractions"]:
            name = "electra" if fraction == 0.5 else f"electra_g{fraction:g}"
            runs[name] = (f"generator.hidden_fraction={fraction:g}",)
    return runs


def pretraining_config(overrides, steps: int):
    from electra_tf.config_io import load_config

    every = max(1, steps // 4)
    return load_config("demo", [f"objective.temperature={TEMPERATURE:g}", *overrides,
                                f"train.num_steps={steps}", f"train.log_every={min(50, steps)}",
                                f"train.eval_every={steps}", f"train.checkpoint_every={every}"])


def objective_inits(budget: dict) -> tuple:
    """The initialisations the objectives experiment fine-tunes, in table and plot order."""
    rates = budget.get("extra_rates", ())
    return ("none", "mlm", *(f"mlm_lr{r:g}" for r in rates),
            "electra", *(f"electra_lr{r:g}" for r in rates))


def plan_steps(budget: dict, runs: dict) -> dict:
    """Steps of each run: ELECTRA ones ``electra_steps``; MLM the FLOPs of the 1/2 ELECTRA."""
    reference = flops_per_sequence(pretraining_config(runs.get("electra", ()),
                                                      budget["electra_steps"]))
    steps = {}
    for name, overrides in runs.items():
        config = pretraining_config(overrides, 1)
        steps[name] = (round(budget["electra_steps"] * reference / flops_per_sequence(config))
                       if config.objective.objective == "mlm" else budget["electra_steps"])
    return steps


def pretrain(name: str, overrides, steps: int, data_dir: str, work_dir: str) -> dict:
    """Runs (or resumes, or reuses) one pre-training run; returns its record."""
    from electra_tf.training.distribute import make_strategy
    from electra_tf.training.loop import run_pretraining

    model_dir = os.path.join(work_dir, "pretrain", name)
    record_path = os.path.join(model_dir, "ablation_record.json")
    if os.path.exists(record_path):
        return read_json(record_path)
    config = pretraining_config(overrides, steps)
    print(f"== pre-train {name}: {steps} steps, {' '.join(overrides)}", flush=True)
    start = time.time()
    result = run_pretraining(config, data_dir, model_dir, make_strategy("cpu"),
                             eval_pattern=data_dir, echo=lambda line: print("  " + line,
                                                                             flush=True))
    per_sequence = flops_per_sequence(config)
    record = {"name": name, "objective": config.objective.objective, "overrides": list(overrides),
              "steps": steps, "batch_size": config.train.batch_size,
              "generator_hidden_size": (config.generator_model.hidden_size
                                        if config.objective.objective == "electra" else None),
              "hidden_fraction": (config.generator.hidden_fraction
                                  if config.objective.objective == "electra" else None),
              "temperature": config.objective.temperature,
              "learning_rate": config.optimizer.learning_rate,
              "flops_per_sequence": per_sequence,
              "total_flops": per_sequence * steps * config.train.batch_size,
              "final_eval": dict(result.eval_metrics), "model_dir": model_dir,
              "seconds": round(time.time() - start, 1)}
    write_json(record_path, record)
    return record


# -- fine-tuning -------------------------------------------------------------------------------

def finetuning_config(budget: dict, num_labels: int, overrides=()):
    """The demo's packaged fine-tuning config; more epochs for few labels; then ``overrides``
    (``--set`` strings, e.g. ``finetune.learning_rate=3e-4``)."""
    from electra_tf.config_io import load_config
    from electra_tf.finetuning.config import (apply_finetuning_overrides, from_pretraining,
                                             packaged_defaults)

    base = from_pretraining(load_config("demo"), packaged_defaults("demo"))
    epochs = budget["epochs"] or (FEW_LABEL_EPOCHS if num_labels <= FEW_LABELS
                                  else base.finetune.epochs)
    return apply_finetuning_overrides(base, [f"finetune.epochs={epochs}", *overrides])


class TaskData:
    """Builds each task once and tokenizes each (task, label count) once."""

    def __init__(self, work_dir: str, dev_examples):
        from electra_tf.tokenizer import Tokenizer

        self.work_dir, self.dev_examples = work_dir, dev_examples
        self.tokenizer = Tokenizer()
        self.cache = {}

    def get(self, task_name: str, num_labels: int, seq_length: int):
        key = (task_name, num_labels)
        if key not in self.cache:
            import dataclasses

            from electra_tf.finetuning import loop, tasks

            paths = ablation_tasks.build_task(task_name, os.path.join(self.work_dir, "tasks",
                                                                      task_name))
            info, train, dev = tasks.read_file_task(paths["train"], paths["dev"],
                                                    text_b_column=paths["text_b_column"])
            # The first num_labels rows of the (shuffled) training file: one fixed subset for
            # every init and seed, so seeds vary the model, not the data.
            train = _head(train, num_labels, dataclasses)
            dev = _head(dev, self.dev_examples or len(dev), dataclasses)
            self.cache[key] = (info, loop.encode_split(self.tokenizer, train, seq_length),
                               train.labels, loop.encode_split(self.tokenizer, dev, seq_length),
                               dev.labels)
        return self.cache[key]


def _head(split, n: int, dataclasses):
    return dataclasses.replace(split, texts=split.texts[:n], labels=split.labels[:n],
                               texts_b=None if split.texts_b is None else split.texts_b[:n])


def finetune_cell(init: str, record, task_name: str, num_labels: int, seed: int, budget: dict,
                  data: TaskData, work_dir: str, encoders: dict, overrides=()) -> dict:
    from electra_tf.finetuning import loop
    from electra_tf.models.pretrained import load_pretrained

    config = finetuning_config(budget, num_labels, overrides)
    info, train, train_labels, dev, dev_labels = data.get(task_name, num_labels,
                                                          config.finetune.seq_length)
    if record is not None and init not in encoders:
        encoders[init] = load_pretrained(record["model_dir"])[2]
    run_dir = os.path.join(work_dir, "finetune", f"{init}_{task_name}_{num_labels}_{seed}")
    start = time.time()
    run = loop.finetune_once(config, data.tokenizer, info, train, train_labels, dev, dev_labels,
                             run_dir, seed, encoders.get(init),
                             init="none" if record is None else record["model_dir"],
                             echo=lambda line: None)
    shutil.rmtree(run_dir, ignore_errors=True)  # metrics are kept in the JSON; weights are not
    return {"init": init, "task": task_name, "labels": num_labels, "seed": seed,
            "epochs": config.finetune.epochs, "learning_rate": config.finetune.learning_rate,
            "reported_epoch": "final",
            "accuracy": run.final["accuracy"], "final_epoch": _metrics(run.final),
            "best_epoch": _metrics(run.best),
            "dev_examples": int(len(dev_labels)), "seconds": round(time.time() - start, 1)}


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("seconds", "train_loss", "step")}


# -- summaries and plots -----------------------------------------------------------------------

def spread(values) -> dict:
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1],
            "n": len(values), "values": values}


def summarize(cells: dict, key_fields) -> list:
    groups = {}
    for cell in cells.values():
        groups.setdefault(tuple(cell[f] for f in key_fields), []).append(cell)
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]]):
        rows.append({**dict(zip(key_fields, key)),
                     "final_accuracy": spread([c["accuracy"] for c in group]),
                     "best_epoch_accuracy": spread([c["best_epoch"]["accuracy"]
                                                    for c in group])})
    return rows


def init_label(init: str, records: dict) -> str:
    """``none`` → "random init", ``mlm_lr0.0005`` → "MLM, lr 0.0005" (the run's own rate)."""
    if init not in records:
        return "random init"
    record = records[init]
    return f"{record['objective'].upper()}, lr {record['learning_rate']:g}"


def plot_objectives(rows: list, records: dict, plan: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, labels = plan["budget"]["tasks"], plan["budget"]["labels"]
    inits = objective_inits(plan["budget"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, init in enumerate(inits):
            for j, n in enumerate(labels):
                row = next((r for r in rows if (r["init"], r["task"], r["labels"])
                            == (init, task, n)), None)
                if row is None:
                    continue
                s = row["final_accuracy"]
                x = j * (len(inits) + 1) + i
                ax.bar(x, s["median"], color=f"C{i}",
                       label=init_label(init, records) if j == 0 else None)
                ax.errorbar(x, s["median"], yerr=[[s["median"] - s["min"]],
                                                  [s["max"] - s["median"]]], color="black",
                            capsize=3)
        ax.set_xticks([j * (len(inits) + 1) + 1 for j in range(len(labels))],
                      [f"{n} labels" for n in labels])
        ax.axhline(ablation_tasks.CHANCE[task], color="grey", linestyle="--", linewidth=1,
                   label="chance")
        ax.set_title(task)
        ax.set_ylabel("dev accuracy (final epoch)")
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
    fig.suptitle(f"random init vs MLM vs ELECTRA at {plan['pretraining_flops']:.3g} pre-training "
                 "FLOPs (median, min–max over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_generator(rows: list, records: dict, plan: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = plan["budget"]["fractions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (task, n) in enumerate((t, n) for t in plan["budget"]["generator_tasks"]
                                  for n in plan["budget"]["generator_labels"]):
        points = [(r["hidden_fraction"], r["final_accuracy"]) for r in rows
                  if (r["task"], r["labels"]) == (task, n)]
        points.sort(key=lambda p: p[0])
        if points:
            xs = [p[0] for p in points]
            left.errorbar(xs, [p[1]["median"] for p in points],
                          yerr=[[p[1]["median"] - p[1]["min"] for p in points],
                                [p[1]["max"] - p[1]["median"] for p in points]],
                          marker="o", capsize=3, color=f"C{i}", label=f"{task}, {n} labels")
            left.axhline(ablation_tasks.CHANCE[task], color=f"C{i}", linestyle=":",
                         linewidth=1)
    left.set_ylabel("dev accuracy (final epoch)")
    aucs = [(records[_generator_run(f)]["hidden_fraction"],
             records[_generator_run(f)]["final_eval"].get("discriminator_auc"))
            for f in fractions if _generator_run(f) in records]
    right.plot([a[0] for a in aucs], [a[1] for a in aucs], marker="o")
    right.set_ylabel("replaced-token AUC (validation)")
    right.set_ylim(0.5, 1.0)  # from chance: differences of 0.001 are not a trend
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_xlabel("generator width / discriminator width")
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(f"generator size, {plan['budget']['electra_steps']} ELECTRA steps each, "
                 f"temperature {TEMPERATURE:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _generator_run(fraction: float) -> str:
    return "electra" if fraction == 0.5 else f"electra_g{fraction:g}"


def markdown_tables(result: dict) -> str:
    """The summaries of ``ablation.json`` as Markdown tables (for docs/ablation.md): the
    pre-training runs, then one row per task and label count with a column per initialisation
    (final epoch, then best epoch), then the generator sweep."""
    fmt = lambda s: f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"  # noqa: E731
    lines = ["| pre-training | lr | steps | FLOPs | replaced-token AUC | MLM loss | "
             "MLM accuracy |", "|---|---|---|---|---|---|---|"]
    for name, r in result["pretraining"].items():
        auc = r["final_eval"].get("discriminator_auc")
        # Records written before the rate was recorded: the config's.
        rate = r.get("learning_rate") or pretraining_config(r["overrides"],
                                                             1).optimizer.learning_rate
        lines.append(f"| {name} | {rate:g} | {r['steps']} | "
                     f"{r['total_flops']:.3g} | {'–' if auc is None else f'{auc:.3f}'} | "
                     f"{r['final_eval']['generator_loss']:.3f} | "
                     f"{r['final_eval']['generator_accuracy']:.3f} |")
    if result.get("objectives"):
        inits = objective_inits(result["plan"]["budget"])
        cells = {(r["task"], r["labels"], r["init"]): r for r in result["objectives"]}
        rows = sorted({(r["task"], r["labels"]) for r in result["objectives"]})
        for title, key in (("final epoch (reported)", "final_accuracy"),
                           ("best epoch (biased upward)", "best_epoch_accuracy")):
            lines += ["", f"Dev accuracy, {title}: median over seeds (min–max)", "",
                      "| task | labels | " + " | ".join(inits) + " |",
                      "|---|---|" + "---|" * len(inits)]
            for task, n in rows:
                lines.append(f"| {task} | {n:,} | " + " | ".join(
                    fmt(cells[task, n, i][key]) if (task, n, i) in cells else "–"
                    for i in inits) + " |")
    if result.get("generator"):
        columns = sorted({(r["task"], r["labels"]) for r in result["generator"]})
        cells = {(r["hidden_fraction"], r["task"], r["labels"]): r for r in result["generator"]}
        lines += ["", "| generator width | FLOPs | replaced-token AUC | " + " | ".join(
            f"{t}, {n:,} labels" for t, n in columns) + " |",
            "|---|---|---|" + "---|" * len(columns)]
        for fraction in sorted({r["hidden_fraction"] for r in result["generator"]}):
            record = result["pretraining"][_generator_run(fraction)]
            auc = record["final_eval"].get("discriminator_auc")
            lines.append(f"| {fraction:g} ({record['generator_hidden_size']}) | "
                         f"{record['total_flops']:.3g} | {auc:.3f} | " + " | ".join(
                             fmt(cells[fraction, t, n]["final_accuracy"])
                             if (fraction, t, n) in cells else "–" for t, n in columns) + " |")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    import tensorflow as tf

    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__}


def build_data(work_dir: str) -> str:
    """The packaged corpus as TFRecords by `make demo`'s own preprocessing, built once."""
    from electra_tf.config_io import load_config
    from examples.demo import preprocess

    data_dir = os.path.join(work_dir, "data")
    if not os.path.exists(os.path.join(data_dir, "COMPLETED")):
        preprocess(work_dir, load_config("demo"))
    return data_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="default", choices=sorted(BUDGETS))
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--work_dir", default="/tmp/electra_ablation",
                        help="data, pre-trained models and tasks (kept for resuming)")
    parser.add_argument("--data", default=None,
                        help="a built pre-training data directory (default: the packaged "
                             "corpus, built into WORK_DIR/data as make demo builds it)")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--tables", action="store_true",
                        help="print OUTPUT_DIR/ablation.json's summaries as Markdown; run nothing")
    args = parser.parse_args(argv)
    if args.tables:
        print(markdown_tables(read_json(os.path.join(args.output_dir, RESULT_FILE))))
        return 0
    experiments = [e for e in args.experiments.split(",") if e]
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"--experiments: unknown {unknown}; known: {', '.join(EXPERIMENTS)}")
    command = "python benchmarks/ablation.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    budget = BUDGETS[args.budget]
    os.makedirs(args.output_dir, exist_ok=True)
    work_dir = os.path.abspath(args.work_dir)
    _check_budget(work_dir, args.budget)
    result_path = os.path.join(args.output_dir, RESULT_FILE)
    previous = read_json(result_path)
    cells = previous.get("cells", {}) if previous.get("budget") == args.budget else {}

    import tensorflow as tf

    # Deterministic kernels for every cell, also when a resumed invocation pre-trains nothing
    # (pre-training turns them on under train.deterministic; fine-tuning alone does not).
    tf.config.experimental.enable_op_determinism()
    started = time.time()
    runs = pretraining_runs(budget, experiments)
    steps = plan_steps(budget, runs)
    data_dir = args.data or build_data(work_dir)
    records = {name: pretrain(name, runs[name], steps[name], data_dir, work_dir)
               for name in runs}
    import dataclasses

    plan = {"budget_name": args.budget, "budget": budget, "experiments": experiments,
            "pretraining_steps": steps, "temperature": TEMPERATURE,
            "pretraining_flops": records["electra"]["total_flops"] if "electra" in records
            else None,
            "finetuning": {"config_few_labels": dataclasses.asdict(
                               finetuning_config(budget, FEW_LABELS).finetune),
                           "config_many_labels": dataclasses.asdict(
                               finetuning_config(budget, FEW_LABELS + 1).finetune),
                           "defaults": "electra_tf/configs/finetuning/demo.yaml via "
                                       "finetuning.config.packaged_defaults('demo')",
                           "epochs": f"{FEW_LABEL_EPOCHS} for <= {FEW_LABELS} training "
                                     "examples, the packaged default otherwise",
                           "reported_epoch": "final (best-epoch metrics recorded beside it)",
                           "train_subset": "the first N rows of the shuffled training file, "
                                           "the same for every init and seed"}}
    result = {"command": command, "budget": args.budget, "machine": machine(), "plan": plan,
              "pretraining": records, "cells": cells}
    data = TaskData(work_dir, budget["dev_examples"])
    encoders = {}

    wanted = []
    if "objectives" in experiments:
        wanted += [("objectives", init, task, n, seed) for init in objective_inits(budget)
                   for task in budget["tasks"] for n in budget["labels"]
                   for seed in budget["seeds"]]
    if "generator" in experiments:
        wanted += [("generator", _generator_run(f), task, n, seed) for f in budget["fractions"]
                   for task in budget["generator_tasks"] for n in budget["generator_labels"]
                   for seed in budget["seeds"]]
    for experiment, init, task, n, seed in wanted:
        key = f"{init}/{task}/{n}/{seed}"  # a cell both experiments need runs once
        if key in cells:
            continue
        cells[key] = finetune_cell(init, records.get(init), task, n, seed, budget, data,
                                   work_dir, encoders)
        print(f"  {key}: final-epoch accuracy {cells[key]['accuracy']:.4f} (best epoch "
              f"{cells[key]['best_epoch']['accuracy']:.4f}) in {cells[key]['seconds']} s",
              flush=True)
        result["wall_s_this_invocation"] = round(time.time() - started, 1)
        write_json(result_path, result)

    plots = []
    if "objectives" in experiments:
        chosen = {k: c for k, c in cells.items() if c["init"] in objective_inits(budget)
                  and c["task"] in budget["tasks"] and c["labels"] in budget["labels"]}
        result["objectives"] = summarize(chosen, ("init", "task", "labels"))
        plot_objectives(result["objectives"], records, plan, os.path.join(args.output_dir,
                                                                 "objectives.png"))
        plots.append("objectives.png")
    if "generator" in experiments:
        names = {_generator_run(f): f for f in budget["fractions"]}
        chosen = {k: {**c, "hidden_fraction": names[c["init"]]} for k, c in cells.items()
                  if c["init"] in names and c["task"] in budget["generator_tasks"]
                  and c["labels"] in budget["generator_labels"]}
        rows = summarize(chosen, ("hidden_fraction", "task", "labels"))
        for row in rows:
            row["replaced_token_auc"] = records[_generator_run(row["hidden_fraction"])][
                "final_eval"].get("discriminator_auc")
        result["generator"] = rows
        plot_generator(rows, records, plan, os.path.join(args.output_dir, "generator.png"))
        plots.append("generator.png")
    result["plots"] = plots
    # Seconds spent in pre-training and fine-tuning over every invocation (a resumed run adds up).
    result["compute_seconds"] = {
        "pretraining": round(sum(r["seconds"] for r in records.values()), 1),
        "finetuning": round(sum(c["seconds"] for c in cells.values()), 1)}
    result["wall_s_this_invocation"] = round(time.time() - started, 1)
    write_json(result_path, result)
    print(markdown_tables(result))
    print(f"wrote {result_path} and {', '.join(plots)} ({time.time() - started:.0f} s)")
    return 0


def _check_budget(work_dir: str, budget: str) -> None:
    """Refuses to mix models of two budgets in one work directory."""
    path = os.path.join(work_dir, "budget.json")
    saved = read_json(path).get("budget")
    if saved and saved != budget:
        raise SystemExit(f"{work_dir} holds runs of --budget {saved}; use another --work_dir")
    os.makedirs(work_dir, exist_ok=True)
    write_json(path, {"budget": budget})


if __name__ == "__main__":
    sys.exit(main())
