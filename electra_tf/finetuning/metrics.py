"""Dev-set metrics for fine-tuning, in plain numpy (GLUE's choices, as the ELECTRA paper reports).

Classification: accuracy, macro-F1 and Matthews correlation (MCC, CoLA's metric). Regression:
Pearson and Spearman correlation (STS-B's metrics). Every function returns a Python float.

Undefined values follow scikit-learn's conventions so that a degenerate epoch (e.g. a model that
predicts one class, or a constant score) yields a number instead of NaN and never wins best-epoch
selection by accident: MCC is 0 when a marginal is constant, a class's F1 is 0 when it has no
true or predicted example, and a correlation with a constant vector is 0.
"""

from __future__ import annotations

import numpy as np

# The metric that picks the best epoch and the median over seeds, per task type.
MAIN_METRIC = {"classification": "accuracy", "regression": "pearson"}


def _as_int_vectors(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    predictions = np.asarray(predictions).astype(np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    if not labels.size:
        raise ValueError("metrics need at least one example")
    return labels, predictions


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes]``: row = true class id, column = predicted class id."""
    labels, predictions = _as_int_vectors(labels, predictions)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def accuracy(labels, predictions) -> float:
    """Fraction of examples whose predicted class id equals the label id."""
    labels, predictions = _as_int_vectors(labels, predictions)
    return float(np.mean(labels == predictions))


def macro_f1(labels, predictions) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    labels, predictions = _as_int_vectors(labels, predictions)
    classes = np.union1d(labels, predictions)
    scores = []
    for c in classes:
        true_pos = np.sum((predictions == c) & (labels == c))
        denominator = np.sum(predictions == c) + np.sum(labels == c)
        scores.append(2.0 * true_pos / denominator)  # == 2PR/(P+R); 0 when true_pos is 0
    return float(np.mean(scores))


def matthews_corrcoef(labels, predictions) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K; binary MCC for two classes)."""
    labels, predictions = _as_int_vectors(labels, predictions)
    num_classes = int(max(labels.max(), predictions.max())) + 1
    matrix = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    correct, total = np.trace(matrix), matrix.sum()
    covariance = correct * total - predicted_counts @ true_counts
    variance = ((total ** 2 - predicted_counts @ predicted_counts)
                * (total ** 2 - true_counts @ true_counts))
    return float(covariance / np.sqrt(variance)) if variance > 0 else 0.0


def pearson(targets, predictions) -> float:
    """Pearson correlation of two float vectors."""
    x = np.asarray(targets, np.float64).reshape(-1)
    y = np.asarray(predictions, np.float64).reshape(-1)
    if x.shape != y.shape or not x.size:
        raise ValueError(f"pearson needs two equal, non-empty vectors; got {x.size} and {y.size}")
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / norm) if norm > 0 else 0.0


def rankdata(values) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (scipy's ``average`` method)."""
    values = np.asarray(values, np.float64).reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of each run of equal values, and each element's run.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size)
    ranks[order] = (starts[run] + ends[run] + 1) / 2.0
    return ranks


def spearman(targets, predictions) -> float:
    """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks."""
    return pearson(rankdata(targets), rankdata(predictions))


def classification_metrics(label_ids, logits) -> dict[str, float]:
    """``accuracy``, ``macro_f1``, ``mcc`` for int labels [n] and logits [n, num_classes]."""
    predictions = np.argmax(np.asarray(logits), axis=-1)
    return {
        "accuracy": accuracy(label_ids, predictions),
        "macro_f1": macro_f1(label_ids, predictions),
        "mcc": matthews_corrcoef(label_ids, predictions),
    }


def regression_metrics(targets, scores) -> dict[str, float]:
    """``pearson``, ``spearman`` and ``mse`` for float targets [n] and predicted scores [n]."""
    targets = np.asarray(targets, np.float64).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    return {
        "pearson": pearson(targets, scores),
        "spearman": spearman(targets, scores),
        "mse": float(np.mean((targets - scores) ** 2)),
    }
