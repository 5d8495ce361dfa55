"""The packaged corpus and the labelled demo task derived from it."""

import csv

from electra_tf import corpus
from examples.demo_task import LABELS, build_demo_task, first_per_label


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


def test_few_label_sets_are_the_first_passages_of_each_label(tmp_path):
    a = build_demo_task(str(tmp_path / "a"), seed=3, train_per_label=50, dev_per_label=10,
                        few_per_label=(4, 20))
    plain = build_demo_task(str(tmp_path / "p"), seed=3, train_per_label=50, dev_per_label=10)
    # Asking for few-label sets changes neither the full training set nor the dev set.
    for split in ("train", "dev"):
        assert open(a[split], "rb").read() == open(plain[split], "rb").read()
    assert sorted(a["few"]) == [12, 60] and plain["few"] == {}
    train = _rows(a["train"])
    for n, path in a["few"].items():
        few = _rows(path)
        assert len(few) == n
        assert {label: sum(r["label"] == label for r in few) for label in LABELS} == {
            label: n // 3 for label in LABELS}
        # The first n/3 rows of each label, in train.tsv's order.
        expected = [r for label in LABELS
                    for r in [r for r in train if r["label"] == label][:n // 3]]
        assert sorted(map(tuple, (r.values() for r in few))) == sorted(
            map(tuple, (r.values() for r in expected)))
        assert [r for r in train if r in few] == few
    # Nested: the 12-label set is inside the 60-label one.
    assert all(r in _rows(a["few"][60]) for r in _rows(a["few"][12]))


def test_first_per_label_keeps_order_and_stops_at_k():
    rows = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x"), ("e", "y")]
    assert first_per_label(rows, 2) == [("a", "x"), ("b", "y"), ("c", "x"), ("e", "y")]
    assert first_per_label(rows, 0) == []


def test_demo_reads_its_table_from_the_numbers_only():
    from examples.demo import read_table

    def table(few, full):  # (median, min, max) per init
        return [(300, {"random init": few[0], "pre-trained": few[1]}),
                (3000, {"random init": full[0], "pre-trained": full[1]})]

    helps = read_table(table(((0.60, 0.55, 0.62), (0.75, 0.70, 0.80)),
                             ((0.96, 0.95, 0.97), (0.95, 0.94, 0.96))))
    assert "+15.0 points" in helps and "-1.0 points" in helps
    assert "pays at 300 labels" in helps and "docs/ablation.md" not in helps
    # Ahead on the median only, with overlapping seeds: not a win.
    overlap = read_table(table(((0.60, 0.55, 0.72), (0.65, 0.58, 0.80)),
                               ((0.96, 0.95, 0.97), (0.95, 0.94, 0.96))))
    assert "seeds overlap" in overlap and "pays" not in overlap
    assert "do not pay off" in overlap and "docs/ablation.md" in overlap
    loses = read_table(table(((0.80, 0.78, 0.82), (0.70, 0.69, 0.71)),
                             ((0.96, 0.95, 0.97), (0.84, 0.83, 0.85))))
    assert "-10.0 points" in loses and "-12.0 points" in loses
    assert "does not help" in loses and "do not pay off" in loses
