"""Labelled fine-tuning data: TSV/CSV/JSONL files and TFDS datasets (GLUE-style).

A task is single-label classification (string labels; the label set is inferred from the
training split, sorted, and saved as ``label_map.json``) or regression (float targets). Each
example has a text and, for pair tasks, a second text (``text_b``), which the tokenizer encodes
as ``[CLS] a [SEP] b [SEP]``.

Files (TSV, CSV, JSONL with a header row) are read by :mod:`electra_tf.finetuning.files`, whose
module docstring gives the formats. Blank lines are not examples: fine-tuning counts them (and
predict marks them). Every error names the file (and line), the column and what was expected.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Optional

import numpy as np

from electra_tf.finetuning.files import TaskDataError, check_columns, read_records, text_value

TASK_TYPES = ("classification", "regression")
LABEL_MAP_FILE = "label_map.json"

# Text features of the GLUE datasets in TFDS, in the order the reference encodes them (a, b).
GLUE_TEXT_FEATURES = {
    "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
    "ax": ("premise", "hypothesis"),
}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a fine-tuned model predicts; saved next to its weights as ``label_map.json``.

    Attributes:
      task_type: ``classification`` or ``regression``.
      labels: class names, index = class id (empty for regression).
      text_column: column (or TFDS feature) of the first text.
      text_b_column: column of the second text for pair tasks, else None.
      label_column: column of the label.
      source: where the training data came from (file path or ``tfds:NAME``).
    """

    task_type: str
    labels: tuple[str, ...]
    text_column: str
    text_b_column: Optional[str]
    label_column: str
    source: str = ""

    def __post_init__(self):
        if self.task_type not in TASK_TYPES:
            raise TaskDataError(
                f"task type {self.task_type!r} is not one of {', '.join(TASK_TYPES)}")
        if self.task_type == "classification" and len(self.labels) < 2:
            raise TaskDataError(
                f"{self.source or 'training data'}: classification needs at least 2 labels in "
                f"column {self.label_column!r}, found {list(self.labels)}")

    @property
    def num_outputs(self) -> int:
        """Width of the head: number of classes, or 1 for regression."""
        return len(self.labels) if self.task_type == "classification" else 1

    @property
    def is_pair(self) -> bool:
        return self.text_b_column is not None

    def save(self, directory: str) -> str:
        path = os.path.join(directory, LABEL_MAP_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=2, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, directory: str) -> "TaskInfo":
        path = os.path.join(directory, LABEL_MAP_FILE)
        if not os.path.exists(path):
            raise TaskDataError(f"{directory}: no {LABEL_MAP_FILE} (expected a fine-tuning "
                                "output directory written by electra_tf.finetune)")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        data["labels"] = tuple(data["labels"])
        return cls(**data)


@dataclasses.dataclass
class Split:
    """One split of a task, ready to encode.

    Attributes:
      texts: first texts, length n.
      texts_b: second texts (pair tasks) or None.
      labels: int32 class ids [n] (classification) or float32 targets [n] (regression).
      source: file or ``tfds:NAME[split]``, for messages.
      blank_lines: blank lines of the file, skipped (so the file's lines add up: header +
        examples + blank lines).
    """

    texts: list[str]
    texts_b: Optional[list[str]]
    labels: np.ndarray
    source: str
    blank_lines: int = 0

    def __len__(self) -> int:
        return len(self.texts)


# ---------------------------------------------------------------------------------------------
# Files.

def _read_labelled(path: str, task_type: str, text_column: str, text_b_column: Optional[str],
                   label_column: str) -> tuple[list[str], Optional[list[str]], list, int]:
    """Texts, second texts, raw labels (stripped strings, or floats for regression) and the
    number of blank lines skipped."""
    header, rows = read_records(path)
    wanted = [text_column] + ([text_b_column] if text_b_column else [])
    check_columns(path, header, wanted + [label_column])
    texts, texts_b, labels, blank = [], ([] if text_b_column else None), [], 0
    for line, record in rows:
        if record is None:
            blank += 1
            continue
        texts.append(text_value(path, line, record, text_column))
        if text_b_column:
            texts_b.append(text_value(path, line, record, text_b_column))
        raw = record.get(label_column)
        if task_type == "regression":
            labels.append(_float_label(path, line, label_column, raw))
        else:
            label = str(raw).strip() if isinstance(raw, (str, int)) else ""
            if not label or "\n" in label or "\r" in label:  # labels.txt holds one per line
                raise TaskDataError(f"{path}:{line}: label {raw!r} in column {label_column!r} "
                                    "is empty, not text, or spans lines")
            labels.append(label)
    if not texts:
        raise TaskDataError(f"{path}: no examples after the header row")
    return texts, texts_b, labels, blank


def _float_label(path: str, line: int, column: str, raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not math.isfinite(value):
        raise TaskDataError(f"{path}:{line}: label {raw!r} in column {column!r} is not a finite "
                            "number (regression task)")
    return value


def label_ids(raw_labels: list[str], labels: tuple[str, ...], source: str) -> np.ndarray:
    """Maps label strings to class ids; a label outside ``labels`` is an error naming it."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({label for label in raw_labels if label not in index})
    if unknown:
        raise TaskDataError(
            f"{source}: label(s) {', '.join(map(repr, unknown))} do not occur in the training "
            f"data; known labels: {', '.join(labels)}")
    return np.asarray([index[label] for label in raw_labels], np.int32)


def read_file_task(train_path: str, dev_path: str, task_type: str = "classification",
                   text_column: str = "text", text_b_column: Optional[str] = None,
                   label_column: str = "label") -> tuple[TaskInfo, Split, Split]:
    """Reads a task from two files with a header row (TSV, CSV or JSONL).

    Args:
      train_path, dev_path: the training and evaluation files.
      task_type: ``classification`` (labels are strings; the sorted set of training labels
        becomes the class list) or ``regression`` (labels parse as floats).
      text_column, text_b_column, label_column: column names; ``text_b_column`` makes it a
        pair task.

    Returns:
      ``(info, train, dev)``.
    """
    if task_type not in TASK_TYPES:
        raise TaskDataError(f"task type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    columns = (task_type, text_column, text_b_column, label_column)
    train = _read_labelled(train_path, *columns)
    dev = _read_labelled(dev_path, *columns)
    classes = tuple(sorted(set(train[2]))) if task_type == "classification" else ()
    info = TaskInfo(task_type, classes, text_column, text_b_column, label_column, train_path)
    splits = []
    for path, (texts, texts_b, raw, blank) in ((train_path, train), (dev_path, dev)):
        labels = (label_ids(raw, classes, path) if task_type == "classification"
                  else np.asarray(raw, np.float32))
        splits.append(Split(texts, texts_b, labels, path, blank))
    return info, splits[0], splits[1]


# ---------------------------------------------------------------------------------------------
# TFDS.

def read_tfds_task(name: str, data_dir: Optional[str] = None, train_split: str = "train",
                   dev_split: str = "validation", text_column: Optional[str] = None,
                   text_b_column: Optional[str] = None, label_column: str = "label",
                   download: bool = True) -> tuple[TaskInfo, Split, Split]:
    """Reads a TFDS dataset (``glue/sst2``, ``glue/mnli``, your own builder) as a task.

    The label feature decides the task type: a ``ClassLabel`` gives classification with its
    names as labels; a float feature gives regression. Without ``text_column`` the text
    features are GLUE's (see ``GLUE_TEXT_FEATURES``) or the dataset's only text feature.

    Args:
      name: TFDS name, optionally with config (``glue/stsb``).
      data_dir: TFDS data directory (default: TFDS's own default, ``~/tensorflow_datasets``).
      train_split, dev_split: split names (``glue/mnli`` evaluates on ``validation_matched``).
      download: download and prepare the dataset if it is not in ``data_dir`` yet.

    Returns:
      ``(info, train, dev)``.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # TFDS raises DatasetNotFoundError and others with their own text.
        raise TaskDataError(f"tfds:{name}: cannot build the dataset ({e})") from None
    if download:
        try:
            builder.download_and_prepare()
        except Exception as e:  # network, checksum or disk errors, in TFDS's own types
            raise TaskDataError(f"tfds:{name}: cannot download and prepare it into "
                                f"{builder.data_dir} ({type(e).__name__}: {e})") from None
    features = builder.info.features
    texts = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    if text_column is None:
        glue = GLUE_TEXT_FEATURES.get(name.split("/")[-1].split(":")[0])
        if name.startswith("glue/") and glue:
            text_column, text_b_column = glue[0], (glue[1] if len(glue) > 1 else None)
        elif len(texts) == 1:
            text_column = texts[0]
        else:
            raise TaskDataError(f"tfds:{name}: has text features {texts}; name the input with "
                                "--text_column (and --text_b_column for pairs)")
    for column in [text_column, text_b_column]:
        if column is not None and column not in texts:
            raise TaskDataError(f"tfds:{name}: no text feature {column!r}; text features: "
                                f"{', '.join(texts) or '(none)'}")
    if label_column not in features:
        raise TaskDataError(f"tfds:{name}: no label feature {label_column!r}; features: "
                            f"{', '.join(features)}")
    label_feature = features[label_column]
    if isinstance(label_feature, tfds.features.ClassLabel):
        info = TaskInfo("classification", tuple(label_feature.names), text_column,
                        text_b_column, label_column, f"tfds:{name}")
    elif np.issubdtype(np.dtype(label_feature.np_dtype), np.floating):
        info = TaskInfo("regression", (), text_column, text_b_column, label_column,
                        f"tfds:{name}")
    else:
        raise TaskDataError(f"tfds:{name}: label feature {label_column!r} is {label_feature!r}; "
                            "expected a ClassLabel (classification) or a float (regression)")
    splits = []
    for split in (train_split, dev_split):
        if split not in builder.info.splits:
            raise TaskDataError(f"tfds:{name}: no split {split!r}; splits: "
                                f"{', '.join(builder.info.splits)}")
        splits.append(_tfds_split(builder, split, info, f"tfds:{name}[{split}]"))
    return info, splits[0], splits[1]


def _tfds_split(builder, split: str, info: TaskInfo, source: str) -> Split:
    import tensorflow_datasets as tfds

    texts, texts_b, labels = [], ([] if info.is_pair else None), []
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for example in tfds.as_numpy(dataset):
        texts.append(example[info.text_column].decode("utf-8"))
        if info.is_pair:
            texts_b.append(example[info.text_b_column].decode("utf-8"))
        labels.append(example[info.label_column])
    labels = np.asarray(labels)
    if info.task_type == "classification":
        if labels.size and labels.min() < 0:
            raise TaskDataError(f"{source}: has unlabelled examples (label -1); use a labelled "
                                "split (GLUE's test splits have no labels)")
        labels = labels.astype(np.int32)
    else:
        labels = labels.astype(np.float32)
    if not texts:
        raise TaskDataError(f"{source}: no examples")
    return Split(texts, texts_b, labels, source)
