"""Reading labelled records from TSV, CSV and JSON Lines files (fine-tuning and predict).

File formats, chosen by extension: ``.jsonl`` (one JSON object per line), ``.csv`` (comma
separated) and anything else tab separated (``.tsv``). CSV and TSV files need a header row.
TSV is one row per line split on tabs, a quote is text (as GLUE's files and the reference's
``csv.reader(..., quotechar=None)`` read them): ordinary text starting with ``"`` must not join
rows. CSV uses standard quoting (a field that *starts* with ``"`` runs to the next lone ``"``;
``""`` inside is a literal quote), read strictly so that a stray quote is an error naming its
line, not rows silently merged into one. Fields have no length limit: a long text is truncated
by the tokenizer like any other.

Blank lines are not examples: readers yield them as ``(line, None)`` so that fine-tuning counts
them and predict marks them. Line numbers are physical lines of the file (what an editor
shows). Every error names the file (and line), the column and what was expected.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Iterator, Optional


class TaskDataError(ValueError):
    """Labelled data is missing, malformed or inconsistent; the message says where."""


def read_records(path: str) -> tuple[list[str], Iterator[tuple[int, Optional[dict]]]]:
    """Opens a TSV/CSV/JSONL file: its column names and an iterator of ``(line, record)``.

    For TSV/CSV the columns come from the header row and each record maps every column to its
    string value; for JSONL each record is the parsed object (the columns are the first
    object's keys) and the values keep their JSON types. A blank line gives ``(line, None)``.
    ``line`` is the physical line where the record starts.

    Raises:
      TaskDataError: the file is missing, empty, not UTF-8, has no header, a row with the
        wrong number of fields, a broken CSV quote, or a line that is not a JSON object.
    """
    if not os.path.isfile(path):
        raise TaskDataError(f"{path}: no such file")
    if path.endswith(".jsonl"):
        rows = _jsonl_rows(path)
    else:
        rows = _csv_rows(path) if path.endswith(".csv") else _tsv_rows(path)
    # The first item is the column list; the rest stream from the file as they are consumed.
    return next(rows), rows


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, text with its line ending)`` for every ``\\n``-terminated line.

    Each line is decoded on its own: a text-mode file decodes ahead in 8 KiB chunks and would
    blame whichever line was being read for a bad byte further down.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # the byte-order mark Excel writes: not part of the first column
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(f"{path}:{number}: not UTF-8 (byte 0x{raw[e.start]:02x} at "
                                    f"byte {e.start + 1} of the line); save the file as UTF-8"
                                    ) from None


def _fields_error(path: str, line: int, count: int, header: list[str], extra: str = ""):
    return TaskDataError(f"{path}:{line}: {count} fields, expected {len(header)} "
                         f"({', '.join(header)}){extra}")


def _tsv_rows(path: str) -> Iterator:
    """Yields the header, then ``(line, record)`` for every line of a TSV (split on tabs)."""
    lines = _lines(path)
    number, text = next(lines, (1, ""))
    header = _tsv_fields(text)
    if header == [""]:
        raise TaskDataError(f"{path}:{number}: no header row (the file or its first line is "
                            "empty)")
    yield header
    for number, text in lines:
        fields = _tsv_fields(text)
        if fields == [""]:
            yield number, None
        elif len(fields) != len(header):
            raise _fields_error(path, number, len(fields), header)
        else:
            yield number, dict(zip(header, fields))


def _tsv_fields(line: str) -> list[str]:
    return line.removesuffix("\n").removesuffix("\r").split("\t")


def _csv_rows(path: str) -> Iterator:
    """Yields the header, then ``(line, record)`` for every record of a CSV."""
    # The csv module refuses fields over 128 KiB by default; a long e-mail is a text like any
    # other (the tokenizer truncates it). The limit is process-wide, so only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), 2 ** 31 - 1))
    # Records can span lines (a quoted newline): ``reader.line_num`` is the last line read, so
    # a record starts one line after the previous record ended.
    reader = csv.reader((text for _, text in _lines(path)), strict=True)
    start = 1
    try:
        header = next(reader, [])
        if not header:
            raise TaskDataError(f"{path}:1: no header row (the file or its first line is empty)")
        yield header
        start = reader.line_num + 1
        for row in reader:
            if not row:
                yield start, None
            elif len(row) != len(header):
                extra = (f"; the row runs to line {reader.line_num}: a field that starts with "
                         '" is quoted up to the next lone "' if reader.line_num > start else "")
                raise _fields_error(path, start, len(row), header, extra)
            else:
                yield start, dict(zip(header, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise TaskDataError(
            f"{path}:{start}: not valid CSV ({e}, line {reader.line_num}); a field that "
            'starts with " is quoted up to the next " followed by a comma or the end of the '
            'line, and "" inside it is a literal quote') from None


def _jsonl_rows(path: str) -> Iterator:
    """Yields the first object's keys, then ``(line, object)`` for every line of a JSONL."""
    blank = []  # blank lines before the first object, which names the columns
    columns = None
    for number, line in _lines(path):
        if not line.strip():
            if columns is None:
                blank.append(number)
            else:
                yield number, None
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskDataError(f"{path}:{number}: not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise TaskDataError(f"{path}:{number}: expected a JSON object, got "
                                f"{type(record).__name__}")
        if columns is None:
            columns = list(record)
            yield columns
            yield from ((b, None) for b in blank)
        yield number, record
    if columns is None:
        yield []


def check_columns(path: str, present: list[str], wanted: list[str]) -> None:
    """Raises TaskDataError naming the first wanted column not in ``present``."""
    for column in wanted:
        if column not in present:
            raise TaskDataError(f"{path}: no column {column!r}; columns present: "
                                f"{', '.join(present) or '(none)'}")


def text_value(path: str, line: int, record: dict, column: str) -> str:
    """The string in ``record[column]``; names file, line and column if absent or not text."""
    if column not in record:
        raise TaskDataError(f"{path}:{line}: no column {column!r}; columns present: "
                            f"{', '.join(record)}")
    value = record[column]
    if not isinstance(value, str):
        raise TaskDataError(f"{path}:{line}: column {column!r} holds {value!r} "
                            f"({type(value).__name__}), expected a string")
    return value
