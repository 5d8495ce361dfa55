"""A labelled task built from the packaged corpus: which source is a passage from?

Three labels — ``austen`` (Jane Austen's novels), ``moby_dick`` (Melville) and ``sotu`` (State of
the Union addresses). Each document is cut into consecutive passages of ``words_per_passage``
words; whole documents (not passages) are assigned to train or dev by a seeded shuffle, so no
chapter or address contributes to both. Each label gets the same number of passages, drawn with
the same seed, so the majority-class baseline is 1/3. The same seed gives byte-identical files.

Few-label training sets (``few_per_label``) are the first ``k`` passages of each label in the
(shuffled) ``train.tsv``: a seeded random sample, nested (the 100-per-label set holds the
50-per-label one), with the same dev set, so results at different label counts compare.
"""

from __future__ import annotations

import json
import os
import random

from electra_tf import corpus

LABELS = tuple(corpus.CORPUS_FILES)


def passages(lines: list[str], words_per_passage: int) -> list[str]:
    words = " ".join(lines).split()
    return [" ".join(words[i:i + words_per_passage])
            for i in range(0, len(words) - words_per_passage + 1, words_per_passage)]


def build_demo_task(output_dir: str, seed: int = 0, train_per_label: int = 1000,
                    dev_per_label: int = 200, words_per_passage: int = 40,
                    dev_document_fraction: float = 0.2,
                    few_per_label: tuple[int, ...] = ()) -> dict:
    """Writes ``train.tsv`` and ``dev.tsv`` (columns ``text``, ``label``) and ``task.json``.

    Args:
      output_dir: directory to write into (created if missing).
      seed: seed of the document split and of passage sampling.
      train_per_label, dev_per_label: passages per label in each split (fewer if a source has
        fewer; the counts written are reported).
      words_per_passage: words in each passage.
      dev_document_fraction: fraction of each source's documents reserved for dev.
      few_per_label: for each ``k``, also write ``train_N.tsv``: the first ``k`` passages of
        each label in ``train.tsv``'s order (``N`` = their total, ``3 k`` unless a label has
        fewer).

    Returns:
      ``{"train": path, "dev": path, "counts": {split: {label: n}}, "few": {N: path}}``.
    """
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "dev": []}
    counts: dict[str, dict[str, int]] = {"train": {}, "dev": {}}
    for label in LABELS:
        documents = list(corpus.read_documents(corpus.corpus_path(label)))
        order = list(range(len(documents)))
        rng.shuffle(order)
        num_dev = max(1, round(len(documents) * dev_document_fraction))
        by_split = {"dev": order[:num_dev], "train": order[num_dev:]}
        for split, wanted in (("train", train_per_label), ("dev", dev_per_label)):
            pool = [p for d in sorted(by_split[split])
                    for p in passages(documents[d], words_per_passage)]
            chosen = rng.sample(pool, min(wanted, len(pool)))
            splits[split].extend((text, label) for text in chosen)
            counts[split][label] = len(chosen)
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for split, rows in splits.items():
        rng.shuffle(rows)
        paths[split] = _write_tsv(os.path.join(output_dir, f"{split}.tsv"), rows)
    few = {}
    for k in few_per_label:
        rows = first_per_label(splits["train"], k)
        few[len(rows)] = _write_tsv(os.path.join(output_dir, f"train_{len(rows)}.tsv"), rows)
    info = {"labels": list(LABELS), "seed": seed, "words_per_passage": words_per_passage,
            "counts": counts, "few_per_label": list(few_per_label)}
    with open(os.path.join(output_dir, "task.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return {"train": paths["train"], "dev": paths["dev"], "counts": counts, "few": few}


def first_per_label(rows: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    """The first ``k`` ``(text, label)`` rows of each label, in the order of ``rows``."""
    taken: dict[str, int] = {}
    chosen = []
    for text, label in rows:
        if taken.get(label, 0) < k:
            taken[label] = taken.get(label, 0) + 1
            chosen.append((text, label))
    return chosen


def _write_tsv(path: str, rows: list[tuple[str, str]]) -> str:
    # Plain TSV, as electra_tf.finetuning.files reads it (a quote is text): passages are words
    # joined by single spaces, so they hold no tab or newline that would need escaping.
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{text}\t{label}\n" for text, label in [("text", "label")] + rows)
    return path
