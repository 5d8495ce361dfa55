"""TFRecords of pre-training examples: feature names, parsing, and a scan for damage.

Feature keys (``docs/architecture.md``): :data:`FEATURES` in our format, the keys of
google-research/electra's records in :data:`ORIGINAL_FEATURES`, renamed on parsing so nothing
downstream knows about them.

Corrupted shards: TensorFlow's reader reports ``corrupted record at <offset>`` without naming the
file. :func:`scan_shard` re-reads a shard in Python, checking the TFRecord framing and both CRCs,
and says which file and which record is bad.

TensorFlow only (no Keras, no tokenizer), like ``objective.masking`` and ``objective.sampling``:
importing it does not import Keras.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import struct
import zlib
from typing import Optional

import google_crc32c
import tensorflow as tf

FEATURES = ("token_ids", "segment_ids", "padding_mask")
# The original ELECTRA (google-research/electra build_pretraining_dataset.py) record keys.
ORIGINAL_FEATURES = {"token_ids": "input_ids", "segment_ids": "segment_ids",
                     "padding_mask": "input_mask"}
FORMATS = ("electra_tf", "original")
COMPRESSIONS = ("", "GZIP")


@dataclasses.dataclass(frozen=True)
class ShardScan:
    """Result of :func:`scan_shard`: ``records`` readable records, then ``error`` (or None)."""

    path: str
    records: int
    error: Optional[str] = None


_HEADER = struct.Struct("<QI")  # record length, masked CRC32C of the length
_FOOTER = struct.Struct("<I")   # masked CRC32C of the data


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C (tensorflow/core/lib/hash/crc32c.h ``Mask``)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def scan_shard(path: str, compression: str = "") -> ShardScan:
    """Reads a TFRecord file in full, checking framing and CRCs; stops at the first problem.

    Unlike TensorFlow's reader, this also reports a file cut inside a record header, which TF
    silently treats as the end of the file.
    """
    records, offset = 0, 0
    try:
        with tf.io.gfile.GFile(path, "rb") as raw:
            f = gzip.GzipFile(fileobj=raw, mode="rb") if compression == "GZIP" else raw
            while True:
                header = f.read(_HEADER.size)
                if not header:
                    return ShardScan(path, records)
                if len(header) < _HEADER.size:
                    return ShardScan(path, records, f"truncated record header at byte {offset}")
                length, length_crc = _HEADER.unpack(header)
                if _masked_crc(header[:8]) != length_crc:
                    return ShardScan(path, records, f"corrupted record length at byte {offset}")
                body = f.read(length + _FOOTER.size)
                if len(body) < length + _FOOTER.size:
                    return ShardScan(path, records, f"truncated record at byte {offset}")
                if _masked_crc(body[:length]) != _FOOTER.unpack(body[length:])[0]:
                    return ShardScan(path, records, f"corrupted record data at byte {offset}")
                records += 1
                offset += _HEADER.size + length + _FOOTER.size
    except (OSError, EOFError, zlib.error, tf.errors.OpError) as e:
        # EOFError: a gzip stream cut short; zlib.error / BadGzipFile (an OSError): bad bytes.
        return ShardScan(path, records, f"unreadable after byte {offset} of the uncompressed "
                         f"stream ({type(e).__name__}: {e})")


def scan_shards(files, compression: str = "", max_workers: int = 8) -> list[ShardScan]:
    """:func:`scan_shard` for every file, in parallel threads (I/O bound), in input order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
        return list(pool.map(lambda f: scan_shard(f, compression), files))


def record_parser(fmt: str, seq_length: int):
    """Parses a batch of serialized records into our names and dtypes (+ example_index)."""
    keys = ORIGINAL_FEATURES if fmt == "original" else {k: k for k in FEATURES}
    spec = {keys[k]: tf.io.FixedLenFeature([seq_length], tf.int64) for k in FEATURES}

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        batch = {k: tf.cast(parsed[keys[k]], tf.int32) for k in FEATURES}
        batch["example_index"] = tf.range(tf.shape(serialized)[0], dtype=tf.int32)
        return batch

    return parse
