"""Reading raw bytes: bounded lines, repairs, skips, documents and chunks (pipelines/reading.py)."""

import gzip
import io

from pipelines import reading
from pipelines.reading import Counts


def _lines(data: bytes, limit: int, block: int = 7):
    counts = Counts()
    blocks = [data[i:i + block] for i in range(0, len(data), block)]
    return list(reading.iter_lines(blocks, limit, counts)), counts


def test_iter_lines_whole_lines_any_block_size():
    data = b"first line\n\nthird\n"
    for block in (1, 3, 100):
        lines, counts = _lines(data, 1024, block)
        assert lines == [(b"first line", True, True), (b"", True, True), (b"third", True, True)]
        assert counts == Counts()


def test_iter_lines_cuts_long_lines_at_whitespace_and_counts_each_line_once():
    data = b"aaaa bbbb cccc dddd\nshort\n" + b"x" * 10 + b"\n"
    lines, counts = _lines(data, 10, block=4)
    assert lines == [
        (b"aaaa bbbb", True, False), (b"cccc dddd", False, True),  # cut at the space, dropped
        (b"short", True, True),
        (b"x" * 10, True, True)]  # exactly the limit: not cut
    assert counts["repaired.long_lines_split"] == 1


def test_iter_lines_hard_cut_keeps_utf8_characters_whole():
    word = "é".encode() * 8  # 16 bytes, no whitespace
    lines, counts = _lines(word + b"\n", 5, block=3)
    pieces = [p for p, _, _ in lines]
    assert b"".join(pieces) == word
    assert all(len(p) <= 5 and p.decode("utf-8") for p in pieces)  # each decodes on its own
    assert [(s, e) for _, s, e in lines] == [(True, False)] + [(False, False)] * 2 + [(False, True)]
    assert counts["repaired.long_lines_split"] == 1


def test_iter_lines_memory_is_bounded_for_an_endless_line():
    # 2 MB without a newline, read in 64 KiB blocks: no piece exceeds the limit.
    stream = (b"word " * 13_107 for _ in range(32))
    counts = Counts()
    pieces = list(reading.iter_lines(stream, 4096, counts))
    assert max(len(p) for p, _, _ in pieces) <= 4096
    assert b" ".join(p for p, _, _ in pieces).split() == [b"word"] * (13_107 * 32)
    assert counts["repaired.long_lines_split"] == 1


def test_valid_utf8_repairs_and_counts():
    counts = Counts()
    assert reading.valid_utf8("naïve".encode(), counts) == "naïve".encode()
    assert reading.valid_utf8(b"caf\xe9 ok", counts) == "caf\ufffd ok".encode()
    assert counts["repaired.invalid_utf8_lines"] == 1


def _blocks(data: bytes, path: str = "f"):
    counts = Counts()
    return list(reading.read_blocks(io.BytesIO(data), path, counts)), counts


def test_read_blocks_skips_empty_and_binary_files():
    assert _blocks(b"") == ([], Counts({"skipped.empty_files": 1}))
    assert _blocks(b" \n\n\t\n")[1] == Counts({"skipped.empty_files": 1})
    assert _blocks(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == (
        [], Counts({"skipped.binary_files": 1}))
    assert _blocks(b"text\n") == ([b"text\n"], Counts())


def _gunzip(data: bytes) -> tuple[bytes, Counts]:
    counts = Counts()
    return b"".join(reading.read_blocks(io.BytesIO(data), "x.gz", counts, gzipped=True)), counts


def test_read_blocks_gunzips_and_notices_truncated_or_corrupt_files():
    good = b"".join(b"line %d\n" % i for i in range(200_000))  # > one read block
    compressed = gzip.compress(good)
    assert _gunzip(compressed) == (good, Counts())
    assert _gunzip(gzip.compress(b"one\n") + gzip.compress(b"two\n")) == (b"one\ntwo\n",
                                                                          Counts())
    # Cut in the middle: what came before is kept, and the file is counted (Beam's own gzip
    # reader would return the prefix as if it were the whole file).
    text, counts = _gunzip(compressed[:len(compressed) // 2])
    assert 0 < len(text) < len(good) and good.startswith(text)
    assert counts == Counts({"skipped.unreadable_files": 1})
    assert _gunzip(b"not gzip at all") == (b"", Counts({"skipped.unreadable_files": 1}))


def test_text_file_chunks_documents_lines_and_parts():
    text = (b"doc one, line one\ndoc one, line two\n\n\n\n"
            b"doc two\n  \n"
            b"doc three line one\ndoc three line two\ndoc three line three\n")
    counts = Counts()
    chunks = list(reading.text_file_chunks([text], "src.txt", 1024, 30, counts))
    assert counts == Counts(documents=3, lines=6)
    assert all(c.source == "src.txt" for c in chunks)
    # A chunk closes once it holds >= 30 bytes; document 2 goes on as its part 1 in the next.
    assert [c.parts for c in chunks] == [[(0, 0)], [(1, 0), (2, 0)], [(2, 1)]]
    assert [c.lines_per_part for c in chunks] == [[2], [1, 2], [1]]
    assert [line for c in chunks for line in c.lines] == [
        b"doc one, line one", b"doc one, line two", b"doc two", b"doc three line one",
        b"doc three line two", b"doc three line three"]


def test_blank_pieces_of_a_long_line_do_not_end_the_document():
    text = b"start" + b" " * 50 + b"end\nnext line\n"
    counts = Counts()
    chunks = list(reading.text_file_chunks([text], "s", 1024 // 64, 1 << 20, counts))
    assert counts["documents"] == 1 and counts["repaired.long_lines_split"] == 1
    assert chunks[0].parts == [(0, 0)]
    assert b"".join(chunks[0].lines).replace(b" ", b"") == b"startendnext line".replace(b" ", b"")


def test_json_lines_records_and_their_failures():
    lines = [b'{"text": "first doc\\nsecond line"}', b"", b"not json",
             b'{"other": "x"}', b'{"text": 7}', b'{"text": "' + b"y" * 100 + b'"}',
             b'{"text": ""}', b'{"text": "last"}']
    counts = Counts()
    texts = list(reading.json_texts([b"\n".join(lines) + b"\n"], "text", 64, counts))
    assert texts == [b"first doc\nsecond line", None, None, None, None, b"", b"last"]
    assert counts == Counts({"skipped.invalid_json_records": 3,
                             "skipped.json_records_too_long": 1})
    chunks = list(reading.records_chunks(texts, "a.jsonl", 1024, 1 << 20, counts))
    # Unusable records keep their index: the empty record is document 5, "last" document 6.
    assert chunks[0].parts == [(0, 0), (6, 0)]
    assert chunks[0].lines == [b"first doc", b"second line", b"last"]
    assert counts["documents"] == 3 and counts["skipped.empty_documents"] == 1
