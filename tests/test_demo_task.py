"""The packaged corpus and the labelled demo task derived from it."""

import csv

from electra_tf import corpus
from examples.demo_task import LABELS, build_demo_task


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_corpus_documents():
    docs = {name: list(corpus.read_documents(corpus.corpus_path(name))) for name in LABELS}
    # Chapters and addresses as documented in resources/PROVENANCE.md.
    assert (len(docs["austen"]), len(docs["moby_dick"]), len(docs["sotu"])) == (270, 138, 233)
    assert all(line.strip() for doc in docs["moby_dick"] for line in doc)


def test_demo_task_is_deterministic_balanced_and_split_by_document(tmp_path):
    a = build_demo_task(str(tmp_path / "a"), seed=3, train_per_label=50, dev_per_label=10)
    b = build_demo_task(str(tmp_path / "b"), seed=3, train_per_label=50, dev_per_label=10)
    c = build_demo_task(str(tmp_path / "c"), seed=4, train_per_label=50, dev_per_label=10)
    for split in ("train", "dev"):
        assert open(a[split], "rb").read() == open(b[split], "rb").read()
        assert open(a[split], "rb").read() != open(c[split], "rb").read()
    train, dev = _rows(a["train"]), _rows(a["dev"])
    assert a["counts"]["train"] == {label: 50 for label in LABELS}
    assert sorted({r["label"] for r in train}) == sorted(LABELS)
    assert len(dev) == 30 and all(len(r["text"].split()) == 40 for r in train + dev)
    # No passage appears in both splits (whole documents are held out).
    assert not {r["text"] for r in train} & {r["text"] for r in dev}
