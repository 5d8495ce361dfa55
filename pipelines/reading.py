"""Raw input → documents of bounded lines → chunks of bounded size (plain Python, no Beam).

Input is read as bytes, never as strict UTF-8 text and never a whole line at a time:

* a line longer than ``max_line_bytes`` is cut into pieces at the last whitespace before the
  limit (at a UTF-8 character boundary when there is none), so a 1 GB line costs at most
  ``max_line_bytes`` of memory per piece; each such line is counted once;
* a line that is not valid UTF-8 is decoded with U+FFFD replacements (which the tokenizer then
  drops, as the reference ``_clean_text`` does) and counted;
* a file with a NUL byte before any text is skipped as binary; a file that cannot be read to
  its end (a corrupt or truncated ``.gz``) keeps what was read before the error; both counted.

Documents are separated by blank lines in text files; in JSON Lines and TFDS every record is a
document whose text is split into lines at ``\\n``. Documents are grouped into
:class:`TextChunk` s of about ``chunk_bytes``: the unit of work of the tokenize-and-pack stage.
A document longer than that is cut into *parts* at line boundaries; each part is packed on its
own, which bounds a worker's memory whatever the input.

The Beam transforms (``pipelines/transforms.py``) wrap these generators; every count lands in a
:class:`Counts` that they report as Beam metrics and in ``metadata.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import zlib
from typing import BinaryIO, Iterable, Iterator, Optional

READ_BLOCK_BYTES = 1 << 20
_WHITESPACE_BYTES = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")

logger = logging.getLogger(__name__)


# Every reason a piece of input is skipped or repaired (the ``skipped.``/``repaired.`` counts).
SKIPPED = ("empty_files", "binary_files", "unreadable_files", "invalid_json_records",
           "json_records_too_long", "empty_documents", "mostly_unk_documents",
           "mostly_unk_tokens")
REPAIRED = ("invalid_utf8_lines", "long_lines_split")


class Counts(collections.Counter):
    """Named event counts, e.g. ``documents`` or ``skipped.binary_files``; adds up with ``+``."""


@dataclasses.dataclass
class TextChunk:
    """Consecutive documents (or parts of one long document) of one source.

    Attributes:
      source: the source's stable name (a path relative to the input glob's base directory, or
        a TFDS file name): with the document index it keys all randomness of the examples.
      parts: ``(document index, part index)`` of each document part in the chunk, in order.
      lines: the parts' non-blank lines (valid UTF-8 bytes), in order.
      lines_per_part: how many of ``lines`` belong to each part (at least one).
    """

    source: str
    parts: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    lines: list[bytes] = dataclasses.field(default_factory=list)
    lines_per_part: list[int] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Lines.

def _cut_point(data: bytes, limit: int) -> tuple[int, int]:
    """Where to cut ``data`` (longer than ``limit``): ``(piece end, rest start)``.

    At the last whitespace byte before ``limit`` (which is dropped: it only separates words);
    without one, at the last UTF-8 character start at or before ``limit``.
    """
    space = max(data.rfind(w, 0, limit) for w in _WHITESPACE_BYTES)
    if space > 0:
        return space, space + 1
    cut = limit
    for _ in range(3):  # a UTF-8 character has at most 3 continuation bytes
        if cut > 1 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
    return cut, cut


def _cut(data: bytes, limit: int) -> tuple[list[bytes], bytes]:
    """Cuts pieces of at most ``limit`` bytes off ``data``; returns them and the short rest."""
    pieces = []
    while len(data) > limit:
        end, rest = _cut_point(data, limit)
        pieces.append(data[:end])
        data = data[rest:]
    return pieces, data


def iter_lines(blocks: Iterable[bytes], max_line_bytes: int,
               counts: Counts) -> Iterator[tuple[bytes, bool, bool]]:
    """Splits a byte stream into lines of at most ``max_line_bytes`` (without ``\\n``).

    Args:
      blocks: the stream, in blocks of any size.
      max_line_bytes: longest piece yielded; longer lines are cut (see :func:`_cut_point`).
      counts: ``repaired.long_lines_split`` is incremented once per line that was cut.

    Yields:
      ``(piece, starts_line, ends_line)``: a whole line is ``(line, True, True)``; the pieces
      of a cut line are flagged so that a blank piece is never taken for a document separator
      and a JSON record is never parsed from a piece.
    """
    pending = b""
    cut = False  # the line in progress already had pieces cut off
    for block in blocks:
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        for line in lines:
            pieces, rest = _cut(line, max_line_bytes)
            if cut or pieces:
                counts["repaired.long_lines_split"] += 1
            for piece in pieces:
                yield piece, not cut, False
                cut = True
            yield rest, not cut, True
            cut = False
        pieces, pending = _cut(pending, max_line_bytes)
        for piece in pieces:  # the line goes on past this block: emit what is certain
            yield piece, not cut, False
            cut = True
    if pending or cut:
        if cut:
            counts["repaired.long_lines_split"] += 1
        yield pending, not cut, True


def valid_utf8(line: bytes, counts: Counts) -> bytes:
    """``line`` itself if valid UTF-8, else re-encoded with U+FFFD replacements (counted)."""
    try:
        line.decode("utf-8")
        return line
    except UnicodeDecodeError:
        counts["repaired.invalid_utf8_lines"] += 1
        return line.decode("utf-8", errors="replace").encode("utf-8")


def read_blocks(f: BinaryIO, path: str, counts: Counts, gzipped: bool = False) -> Iterator[bytes]:
    """Blocks of ``f`` (gunzipped if ``gzipped``); a read error ends the stream.

    A file of only whitespace (or nothing) is ``skipped.empty_files``. A NUL byte before any
    text marks a binary file: nothing is yielded (``skipped.binary_files``). A file that cannot
    be read to its end — a corrupt or truncated ``.gz`` — keeps the blocks read before the error
    and is ``skipped.unreadable_files``.
    """
    blocks = iter(lambda: f.read(READ_BLOCK_BYTES), b"")
    if gzipped:
        blocks = _gunzip(blocks)
    blank = True
    try:
        for block in blocks:
            if blank and b"\x00" in block:
                counts["skipped.binary_files"] += 1
                logger.warning("skipping %s: a NUL byte before its first text (binary file)", path)
                return
            blank = blank and block.isspace()
            yield block
    except (OSError, EOFError, zlib.error) as e:
        counts["skipped.unreadable_files"] += 1
        logger.warning("skipping the rest of %s: %s: %s", path, type(e).__name__, e)
        return
    if blank:
        counts["skipped.empty_files"] += 1


def _gunzip(raw: Iterator[bytes]) -> Iterator[bytes]:
    """Decompresses a gzip stream (of one or more members) in blocks of bounded size.

    Unlike Beam's reader, which returns a truncated stream as if it were complete, a stream
    that ends inside a member raises EOFError; a corrupt one raises zlib.error after the blocks
    before the damage.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fed = False
    for data in raw:
        while data:
            fed = True
            block = decompressor.decompress(data, READ_BLOCK_BYTES)
            if block:
                yield block
            if decompressor.eof:  # a member ended; another may follow
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                fed = False
            else:
                data = decompressor.unconsumed_tail
    if fed:
        raise EOFError("the compressed stream ends before its end-of-stream marker")


# ---------------------------------------------------------------------------------------------
# Documents and chunks.

class ChunkBuilder:
    """Collects document lines into :class:`TextChunk` s of about ``chunk_bytes``.

    Call :meth:`add_line` for each non-blank line of a document, then :meth:`end_document`;
    :meth:`add_line` returns the chunk that it filled, if any. :meth:`finish` returns the rest.
    """

    def __init__(self, source: str, chunk_bytes: int):
        self.source = source
        self.chunk_bytes = chunk_bytes
        self.doc_index = 0
        self._part = 0
        self._part_open = False
        self._chunk = TextChunk(source)
        self._bytes = 0

    def add_line(self, line: bytes) -> list[TextChunk]:
        if not self._part_open:
            self._chunk.parts.append((self.doc_index, self._part))
            self._chunk.lines_per_part.append(0)
            self._part_open = True
        self._chunk.lines.append(line)
        self._chunk.lines_per_part[-1] += 1
        self._bytes += len(line)
        if self._bytes < self.chunk_bytes:
            return []
        # The document may go on: it continues as its next part in the next chunk.
        self._part += 1
        self._part_open = False
        return self.finish()

    def end_document(self) -> None:
        self.doc_index += 1
        self._part = 0
        self._part_open = False

    def finish(self) -> list[TextChunk]:
        """The chunk collected so far (none if empty); the builder starts a new one."""
        chunk, self._chunk, self._bytes = self._chunk, TextChunk(self.source), 0
        return [chunk] if chunk.parts else []


def text_file_chunks(blocks: Iterable[bytes], source: str, max_line_bytes: int,
                     chunk_bytes: int, counts: Counts) -> Iterator[TextChunk]:
    """Chunks of a plain-text stream: non-blank lines, documents separated by blank lines.

    Runs of blank lines are one separator. Counts ``documents`` and ``lines``.
    """
    builder = ChunkBuilder(source, chunk_bytes)
    in_document = False
    for piece, starts_line, ends_line in iter_lines(blocks, max_line_bytes, counts):
        if not piece.strip():
            if starts_line and ends_line and in_document:
                builder.end_document()
                in_document = False
            continue
        if starts_line:
            counts["lines"] += 1
        if not in_document:
            counts["documents"] += 1
            in_document = True
        yield from builder.add_line(valid_utf8(piece, counts))
    yield from builder.finish()


def records_chunks(texts: Iterable[Optional[bytes]], source: str, max_line_bytes: int,
                   chunk_bytes: int, counts: Counts) -> Iterator[TextChunk]:
    """Chunks of a sequence of records (JSON Lines, TFDS), one document each.

    A record's text is split into lines at ``\\n``; blank lines are dropped. A record without
    any text is ``skipped.empty_documents``. ``None`` marks an unusable record, counted by
    whoever produced it; it keeps its document index, so the indices (and so the examples) of
    the other records do not depend on which records were bad.
    """
    builder = ChunkBuilder(source, chunk_bytes)
    for text in texts:
        if text is not None:
            counts["documents"] += 1
            empty = True
            for piece, starts_line, _ in iter_lines([text], max_line_bytes, counts):
                if piece.strip():
                    counts["lines"] += starts_line
                    empty = False
                    yield from builder.add_line(valid_utf8(piece, counts))
            if empty:
                counts["skipped.empty_documents"] += 1
        builder.end_document()
    yield from builder.finish()


def json_texts(blocks: Iterable[bytes], field: str, max_record_bytes: int,
               counts: Counts) -> Iterator[Optional[bytes]]:
    """The ``field`` of each JSON Lines record, as UTF-8 bytes; None for an unusable record.

    A record longer than ``max_record_bytes`` is skipped (``skipped.json_records_too_long``)
    without being held in memory: a JSON value cannot be parsed in pieces. Blank lines are
    ignored; malformed JSON, a missing field or a non-string value is
    ``skipped.invalid_json_records``.
    """
    # Pieces of over-long records are dropped, so they must not count as repaired lines.
    for piece, starts_line, ends_line in iter_lines(blocks, max_record_bytes, Counts()):
        if not (starts_line and ends_line):
            if starts_line:
                counts["skipped.json_records_too_long"] += 1
                yield None
            continue
        if not piece.strip():
            continue
        try:
            record = json.loads(valid_utf8(piece, counts))
        except ValueError:
            record = None
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            counts["skipped.invalid_json_records"] += 1
            yield None
            continue
        yield text.encode("utf-8", errors="replace")
