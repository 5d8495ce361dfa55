"""Labelled tasks built from the packaged corpus for ``benchmarks/ablation.py``.

Every task splits *documents* (a novel's chapter, one State of the Union address) into train
and dev with a seeded shuffle before cutting passages, so no document contributes to both; the
same seed writes byte-identical files. Each writes ``train.tsv`` and ``dev.tsv`` (header row,
columns ``text``[, ``text_b``], ``label``) as ``electra_tf.finetuning.tasks.read_file_task``
reads them, and returns ``{"train", "dev", "text_b_column", "labels", "counts"}``.

* ``author`` — the demo task (``examples/demo_task.py``): which source (Austen, Melville, State
  of the Union) a 40-word passage is from; 3 balanced labels.
* ``party`` — the party of the president (Democratic or Republican) who gave the State of the
  Union address a 40-word passage is from (``resources/corpus/sotu_index.tsv``); 2 balanced
  labels. Word choice drifts with the era more than with the party, which makes it hard.
* ``era`` — which of three eras (1790–1860, 1861–1932, 1933–2021) the State of the Union
  address a 40-word passage is from; 3 balanced labels. (It replaced a same-source pair task
  that stayed at chance for every initialisation at the ``small`` budget: the 2-layer model
  did not learn to compare two passages.)
"""

from __future__ import annotations

import csv
import os
import random

from electra_tf import corpus
from examples.demo_task import passages, build_demo_task

TASKS = ("author", "party", "era")
CHANCE = {"author": 1 / 3, "party": 1 / 2, "era": 1 / 3}  # balanced labels
PARTIES = ("Democratic", "Republican")
# Three eras of about 70-90 addresses each (sotu_index.tsv: 71, 72 and 90 addresses).
ERAS = {"1790-1860": (1790, 1860), "1861-1932": (1861, 1932), "1933-2021": (1933, 2021)}


def _split_documents(documents: list, rng: random.Random, dev_fraction: float = 0.2):
    order = list(range(len(documents)))
    rng.shuffle(order)
    num_dev = max(1, round(len(documents) * dev_fraction))
    return {"dev": sorted(order[:num_dev]), "train": sorted(order[num_dev:])}


def _write(output_dir: str, splits: dict, text_b: bool) -> dict:
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    header = ("text", "text_b", "label") if text_b else ("text", "label")
    for split, rows in splits.items():
        paths[split] = os.path.join(output_dir, f"{split}.tsv")
        # Passages are words joined by single spaces: no tab or newline to escape.
        with open(paths[split], "w", encoding="utf-8", newline="") as f:
            f.writelines("\t".join(row) + "\n" for row in [header] + rows)
    return paths


def _counts(splits: dict) -> dict:
    return {split: {label: sum(1 for row in rows if row[-1] == label)
                    for label in sorted({row[-1] for row in rows})}
            for split, rows in splits.items()}


def _sotu_task(output_dir: str, label_of, labels, seed: int, train_per_label: int,
               dev_per_label: int, words_per_passage: int) -> dict:
    """State of the Union passages labelled by ``label_of(index_row)``; per label, whole
    addresses go to train or dev, then ``*_per_label`` passages are drawn from each side."""
    with open(os.path.join(corpus.corpus_dir(), "sotu_index.tsv"), encoding="utf-8") as f:
        label_of_doc = {int(row["doc"]): label_of(row)
                        for row in csv.DictReader(f, delimiter="\t")}
    documents = list(corpus.read_documents(corpus.corpus_path("sotu")))
    rng = random.Random(seed)
    splits = {"train": [], "dev": []}
    for label in labels:
        docs = [documents[i] for i in range(len(documents)) if label_of_doc.get(i) == label]
        by_split = _split_documents(docs, rng)
        for split, wanted in (("train", train_per_label), ("dev", dev_per_label)):
            pool = [p for d in by_split[split] for p in passages(docs[d], words_per_passage)]
            splits[split].extend((text, label) for text in rng.sample(pool, min(wanted,
                                                                                len(pool))))
    for rows in splits.values():
        rng.shuffle(rows)
    paths = _write(output_dir, splits, text_b=False)
    return {**paths, "text_b_column": None, "labels": list(labels), "counts": _counts(splits)}


def build_party_task(output_dir: str, seed: int = 0, train_per_label: int = 1500,
                     dev_per_label: int = 300, words_per_passage: int = 40) -> dict:
    """Democratic vs Republican State of the Union passages (whole addresses split)."""
    return _sotu_task(output_dir, lambda row: row["party"], PARTIES, seed, train_per_label,
                      dev_per_label, words_per_passage)


def era_of(year: int) -> str:
    """The :data:`ERAS` label of a year (inclusive bounds)."""
    return next(name for name, (first, last) in ERAS.items() if first <= year <= last)


def build_era_task(output_dir: str, seed: int = 0, train_per_label: int = 1000,
                   dev_per_label: int = 200, words_per_passage: int = 40) -> dict:
    """The era (:data:`ERAS`) of the State of the Union address a passage is from."""
    return _sotu_task(output_dir, lambda row: era_of(int(row["year"])), tuple(ERAS), seed,
                      train_per_label, dev_per_label, words_per_passage)


def build_task(name: str, output_dir: str, seed: int = 0) -> dict:
    """One of :data:`TASKS` into ``output_dir`` (3,000 training and 600 dev examples each)."""
    if name == "author":
        paths = build_demo_task(output_dir, seed=seed, train_per_label=1000, dev_per_label=200)
        return {**paths, "text_b_column": None, "labels": sorted(corpus.CORPUS_FILES)}
    if name == "party":
        return build_party_task(output_dir, seed)
    if name == "era":
        return build_era_task(output_dir, seed)
    raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
