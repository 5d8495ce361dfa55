"""Where does random init's edge in few-label fine-tuning come from? Word-table swaps and a
learning-rate sweep.

``benchmarks/ablation.py`` finds random init as good as or better than a pre-trained encoder
when fine-tuning on 200 labels, and ``benchmarks/probe_representations.py`` finds the frozen
pre-trained features more informative than random ones, so the gap arises in fine-tuning. The
hypothesis: a random encoder fits a few hundred passages by learning its word table — in
effect a bag-of-words classifier — while a pre-trained one starts from a word table organised
for its pre-training task. This script tests it with a 2 × 2 design per pre-trained model:

==========================  ====================  =========================
init                        word table            everything else
==========================  ====================  =========================
``none``                    random                random
``NAME``                    pre-trained           pre-trained
``NAME:random_words``       random                pre-trained
``NAME:words_only``         pre-trained           random
==========================  ====================  =========================

"Word table" is ``embeddings.word_embeddings`` only; "everything else" is the position and
segment tables, the embedding LayerNorm and projection and the transformer layers. "Random" is
the encoder ``--init none`` builds for the same seed (``derive_seed(seed, "encoder")``), so the
``none`` row is exactly ``ablation.py``'s random-init cell and every row of one seed shares its
random weights, head, dropout masks and example order. Fine-tuning is ``ablation.py``'s cell
(``finetune_cell``: the demo network's packaged defaults, 10 epochs for few labels, the final
epoch reported) on its tasks and label subsets.

``--learning_rates`` repeats every cell at each fine-tuning rate (default: the packaged 1e-3
only), to see whether the gap is one recipe suiting one init (``--variants ''`` with
``--learning_rates 1e-4,3e-4,1e-3,3e-3`` compares the pure inits only).

Beside them, a bag-of-words reference with no neural network: multinomial naive Bayes
(Laplace smoothing 1, no tuning) over the same word pieces the model sees (the encoded
``token_ids``, [CLS]/[SEP]/padding excluded).

Usage::

    python benchmarks/finetuning_gap.py [--model electra=/tmp/electra_ablation/pretrain/electra
        ...] [--tasks author,era,party] [--labels 200] [--seeds 1,2,3]
        [--variants :random_words,:words_only] [--learning_rates 1e-3] [--tables]

Writes ``benchmarks/results/finetuning_gap.json`` (``--output``); resumable like
``ablation.py`` (finished cells are kept in the JSON and skipped). What the runs found (the
word table is the part that transfers; the pre-trained encoder wants a lower rate):
``docs/ablation.md``, section 3.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(BENCHMARKS), BENCHMARKS]

import ablation  # noqa: E402  (benchmarks/)
from result_files import read_json, write_json  # noqa: E402

DEFAULT_MODELS = ("electra=/tmp/electra_ablation/pretrain/electra",
                  "mlm=/tmp/electra_ablation/pretrain/mlm")
VARIANTS = (":random_words", ":words_only")


def mixed_encoder(model_config, seed: int, pretrained, variant: str):
    """The seed's random encoder with the pre-trained word table (``:words_only``), with every
    pre-trained weight but the word table (``:random_words``), or all pre-trained (``''``)."""
    from electra_tf.models.encoder import ElectraEncoder
    from electra_tf.models.layers import derive_seed

    encoder = ElectraEncoder(model_config, seed=derive_seed(seed, "encoder"))
    encoder.build()
    word_table = pretrained.embeddings.word_embeddings.path
    for source, target in zip(pretrained.trainable_variables, encoder.trainable_variables):
        # The same weight under another root name ("discriminator/…", "electra_encoder/…").
        if source.path.split("/", 1)[1] != target.path.split("/", 1)[1]:
            raise ValueError(f"weight order differs: {source.path} vs {target.path}")
        is_word_table = source.path == word_table
        if variant == "" or (variant == ":words_only") == is_word_table:
            target.assign(source)
    return encoder


def naive_bayes_accuracy(train_ids, train_y, dev_ids, dev_y, num_classes: int,
                         special_ids, vocab_size: int) -> float:
    """Multinomial naive Bayes with add-one smoothing over word-piece counts."""
    def counts(ids):
        out = np.zeros((len(ids), vocab_size))
        for row, sequence in enumerate(ids):
            keep = sequence[~np.isin(sequence, special_ids)]
            np.add.at(out[row], keep, 1.0)
        return out

    x_train, x_dev = counts(train_ids), counts(dev_ids)
    class_counts = np.stack([x_train[train_y == c].sum(0) for c in range(num_classes)])
    log_word = np.log(class_counts + 1.0) - np.log((class_counts + 1.0).sum(1, keepdims=True))
    log_prior = np.log(np.bincount(train_y, minlength=num_classes) / len(train_y))
    scores = x_dev @ log_word.T + log_prior
    return float((scores.argmax(1) == dev_y).mean())


def summarize(cells: dict) -> list:
    groups = {}
    for cell in cells.values():
        groups.setdefault((cell["task"], cell["labels"], cell["learning_rate"], cell["init"]),
                          []).append(cell["accuracy"])
    return [{"task": t, "labels": n, "learning_rate": lr, "init": i,
             "final_accuracy": ablation.spread(v)}
            for (t, n, lr, i), v in sorted(groups.items())]


def markdown(result: dict) -> str:
    inits = result["inits"]
    lines = ["| task | labels | lr | naive Bayes | " + " | ".join(inits) + " |",
             "|---|---|---|---|" + "---|" * len(inits)]
    rows = {(r["task"], r["labels"], r["learning_rate"], r["init"]): r["final_accuracy"]
            for r in result["summary"]}
    for task in result["tasks"]:
        for n in result["labels"]:
            for lr in result["learning_rates"]:
                cells = []
                for init in inits:
                    s = rows.get((task, n, lr, init))
                    cells.append("–" if s is None else
                                 f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})")
                nb = result["naive_bayes"].get(f"{task}/{n}")
                lines.append(f"| {task} | {n} | {lr:g} | {'–' if nb is None else f'{nb:.3f}'} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=None, metavar="NAME=DIR",
                        help="a pre-trained model directory (repeatable); default: "
                             + ", ".join(DEFAULT_MODELS))
    parser.add_argument("--tasks", default="author,era,party")
    parser.add_argument("--labels", default="200")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, of " + ", ".join(VARIANTS) + " ('' = the pure "
                             "inits none and NAME only)")
    parser.add_argument("--learning_rates", default="1e-3",
                        help="fine-tuning rates, comma-separated (the packaged default: 1e-3)")
    parser.add_argument("--work_dir", default="/tmp/electra_finetuning_gap",
                        help="the tasks' files and scratch fine-tuning directories")
    parser.add_argument("--output", default=os.path.join(BENCHMARKS, "results",
                                                         "finetuning_gap.json"))
    parser.add_argument("--tables", action="store_true",
                        help="print --output's summary as Markdown; run nothing")
    args = parser.parse_args(argv)
    if args.tables:
        print(markdown(read_json(args.output)))
        return 0
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(ablation.ablation_tasks.TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; known: "
                     f"{', '.join(ablation.ablation_tasks.TASKS)}")
    labels = [int(n) for n in args.labels.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    if sorted(set(variants) - set(VARIANTS)):
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}, got "
                     f"{args.variants!r}")
    learning_rates = [float(r) for r in args.learning_rates.split(",") if r]
    models = {}
    for item in args.model or DEFAULT_MODELS:
        name, sep, directory = item.partition("=")
        if not sep or not os.path.isdir(directory):
            parser.error(f"--model {item!r}: expected NAME=DIR with DIR a pre-trained model "
                         "directory (benchmarks/ablation.py writes them under "
                         "WORK_DIR/pretrain/)")
        models[name] = directory

    import tensorflow as tf

    from electra_tf.models.pretrained import load_pretrained

    # As ablation.py's cells, which run after pre-training (train.deterministic) in-process:
    # the same kernels, so a cell here repeats the same cell there.
    tf.config.experimental.enable_op_determinism()
    started = time.time()
    previous = read_json(args.output)
    cells = previous.get("cells", {}) if previous.get("models") == models else {}
    pretrained, model_config = {}, None
    for name, directory in models.items():
        config, _, pretrained[name] = load_pretrained(directory)
        model_config = config.model
    inits = ["none"] + [name + v for name in models for v in ("", *variants)]
    budget = {"epochs": None}  # ablation.finetuning_config: 10 epochs for <= 500 labels
    data = ablation.TaskData(args.work_dir, None)
    seq_length = ablation.finetuning_config(budget, labels[0]).finetune.seq_length
    result = {"command": "python benchmarks/finetuning_gap.py " + shlex.join(
                  sys.argv[1:] if argv is None else argv),
              "machine": ablation.machine(), "models": models, "tasks": tasks,
              "labels": labels, "learning_rates": learning_rates, "seeds": seeds,
              "inits": inits, "naive_bayes": {}, "cells": cells}
    tokenizer = data.tokenizer
    special = np.array([tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id])
    for task in tasks:
        for n in labels:
            info, train, train_y, dev, dev_y = data.get(task, n, seq_length)
            result["naive_bayes"][f"{task}/{n}"] = naive_bayes_accuracy(
                train["token_ids"], np.asarray(train_y), dev["token_ids"], np.asarray(dev_y),
                info.num_outputs, special, model_config.vocab_size)
            for seed in seeds:
                for lr, init in ((lr, init) for lr in learning_rates for init in inits):
                    key = f"{init}/{task}/{n}/{lr:g}/{seed}"
                    if key in cells:
                        continue
                    name, _, variant = init.partition(":")
                    encoders, record = {}, None
                    if init != "none":
                        encoders[init] = mixed_encoder(model_config, seed, pretrained[name],
                                                       ":" + variant if variant else "")
                        record = {"model_dir": f"{models[name]} ({variant or 'all weights'})"}
                    cells[key] = ablation.finetune_cell(
                        init, record, task, n, seed, budget, data, args.work_dir, encoders,
                        [f"finetune.learning_rate={lr:g}"])
                    print(f"  {key}: final-epoch accuracy {cells[key]['accuracy']:.4f}",
                          flush=True)
                    write_json(args.output, result)
    result["summary"] = summarize(cells)
    result["wall_s_this_invocation"] = round(time.time() - started, 1)
    write_json(args.output, result)
    print(markdown(result))
    print(f"wrote {args.output} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
