"""Pre-training input: TFRecord shards → batched ``tf.data`` pipelines with checked metadata.

A pre-training data directory (``docs/architecture.md``) holds ``split-XXXXX-of-YYYYY.tfrecord``
shards, ``metadata.json`` and a ``COMPLETED`` marker. :func:`find_shards` resolves a glob (or a
directory) to its shards, refuses unfinished directories and checks the metadata against the
config and the tokenizer; :func:`pretraining_dataset` turns the shards into batches of

    token_ids, segment_ids, padding_mask   int32 [batch, seq_length]
    example_index                          int32 [batch]  (position in the batch, 0 … batch − 1)

Records in the original ELECTRA format (``input_ids``, ``input_mask``, ``segment_ids``) are
renamed on parsing (:mod:`electra_tf.training.records`). google-research/electra writes no
``metadata.json``: a directory without markers or shards named like ours is read as its
records, judged from the first record, with a warning that the tokenizer cannot be verified.

Empty data is refused before any training: tf.data would repeat empty files forever. Corrupted
shards: TensorFlow's reader does not name the file; :func:`explain_read_error` re-reads the
shards (:func:`~electra_tf.training.records.scan_shard`, framing and both CRCs) and names file
and record; with ``skip_corrupt`` a damaged shard gives only the records before the damage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Optional

import tensorflow as tf

from electra_tf.tokenizer import Tokenizer, TokenizerError
from electra_tf.training.records import (COMPRESSIONS, FEATURES, FORMATS, ORIGINAL_FEATURES,
                                         record_parser, scan_shards)

# Shard names of pipelines.build_pretraining_data (docs/architecture.md).
_OUR_SHARD_NAME = re.compile(r"[a-z]+-\d{5,}-of-\d{5,}\.tfrecord(\.gz)?")

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data is missing, unfinished, corrupted or does not match the config."""


@dataclasses.dataclass(frozen=True)
class Shards:
    """The TFRecord files of one split, with what is needed to read them.

    Attributes:
      files: sorted shard paths.
      format: ``electra_tf`` or ``original`` (the record keys, see module docstring).
      compression: ``""`` or ``"GZIP"``.
      seq_length: tokens per example.
      num_examples: examples in these files according to ``metadata.json`` (0 if unknown).
      readable_records: for shards found damaged by a ``skip_corrupt`` scan, how many records
        before the damage are read; shards not listed are read whole.
    """

    files: tuple[str, ...]
    format: str
    compression: str
    seq_length: int
    num_examples: int = 0
    readable_records: tuple[tuple[str, int], ...] = ()


# ---------------------------------------------------------------------------------------------
# Finding and checking the shards.

def find_shards(pattern: str, seq_length: int, tokenizer: Tokenizer, split: str = "train",
                skip_corrupt: bool = False) -> Shards:
    """Resolves ``pattern`` to shards and checks every directory they come from.

    Args:
      pattern: a glob (``gs://bucket/data/train-*.tfrecord``; any ``tf.io.gfile`` file system)
        or a data directory, which means its ``split`` shards as listed in ``metadata.json``
        (every file in it for a directory of google-research/electra records).
      seq_length: the config's ``data.seq_length``; must equal the metadata's (or the records').
      tokenizer: the config's tokenizer; its settings (vocab sha256, casing, special ids) must
        equal the metadata's.
      split: split name used when ``pattern`` is a directory.
      skip_corrupt: scan every shard (reads all data once) and keep only the records before
        any damage, logging each damaged file, instead of failing when training reaches it.

    Raises:
      DataError: no files; files holding no record; an unfinished directory (our shards
        without ``COMPLETED``); metadata or records unlike the config (each named); mixed formats.
    """
    where = repr(pattern)
    if tf.io.gfile.isdir(pattern):
        if _has_markers(pattern):
            metadata = read_metadata(pattern)
            split_info = metadata.get("splits", {}).get(split)
            if not split_info or "file_pattern" not in split_info:
                raise DataError(f"{os.path.join(pattern, 'metadata.json')}: no split {split!r} "
                                f"with a file_pattern (splits: "
                                f"{sorted(metadata.get('splits', {}))})")
            where = f"the {split!r} split of {pattern}"
            pattern = os.path.join(pattern, split_info["file_pattern"])
        elif split != "train":
            # Records without metadata have no splits: the whole directory is training data,
            # and evaluating on it would silently score the training examples.
            raise DataError(f"{pattern} has no metadata.json, so no {split!r} split; give the "
                            f"{split} records' glob (e.g. '{os.path.join(pattern, 'eval-*')}')")
        else:
            pattern = os.path.join(pattern, "*")
    files = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise DataError(f"no files match {pattern!r}")
    markers = [f for f in files if os.path.basename(f) in ("metadata.json", "COMPLETED")]
    if markers:
        raise DataError(f"{pattern!r} also matches {markers}; give the shards' glob "
                        "(DIR/train-*) or the directory itself")
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(os.path.dirname(f), []).append(f)
    formats, compressions, num_examples = set(), set(), 0
    for directory, dir_files in sorted(by_dir.items()):
        if _has_markers(directory) or any(_OUR_SHARD_NAME.fullmatch(os.path.basename(f))
                                          for f in dir_files):
            metadata = read_metadata(directory)
            check_metadata(metadata, seq_length, tokenizer,
                           os.path.join(directory, "metadata.json"))
            formats.add(metadata["format"])
            compressions.add(metadata.get("compression", ""))
            num_examples += _examples_in(metadata, dir_files)
        else:
            formats.add(_foreign_format(directory, dir_files, seq_length, tokenizer))
            compressions.add("")  # the reference script does not compress
    if len(formats) > 1 or len(compressions) > 1:
        raise DataError(f"{pattern!r} mixes directories of formats {sorted(formats)} and "
                        f"compressions {sorted(compressions)}; use one kind per run")
    shards = Shards(files, formats.pop(), compressions.pop(), seq_length, num_examples)
    if skip_corrupt:
        shards = _drop_damage(shards)
    if _first_record(shards.files, shards.compression) is None:
        raise DataError(f"{where} holds no record ({len(shards.files)} empty file(s): "
                        f"{shards.files[0]}{', ...' if len(shards.files) > 1 else ''}); build "
                        "the data from more text (a small corpus can leave a split empty)")
    return shards


def _has_markers(directory: str) -> bool:
    return any(tf.io.gfile.exists(os.path.join(directory, name))
               for name in ("COMPLETED", "metadata.json"))


def _first_record(files, compression: str) -> Optional[tuple[str, bytes]]:
    """``(file, record)``: the first record of the first of ``files`` that holds one, or None;
    DataError if that record is damaged."""
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path, compression_type=compression).take(1):
                return path, record.numpy()
        except tf.errors.DataLossError as e:
            raise DataError(f"damaged TFRecord shard: {path}: its first record is unreadable "
                            f"({e.message}). Re-create it, or pass --skip_corrupt to train on "
                            "the other shards") from None
    return None


def _foreign_format(directory: str, files, seq_length: int, tokenizer: Tokenizer) -> str:
    """The format of records without ``metadata.json``, judged from the first record.

    google-research/electra's ``build_pretraining_dataset.py`` writes ``input_ids``,
    ``input_mask``, ``segment_ids`` (int64, ``max_seq_length`` each) into uncompressed
    ``pretrain_data.tfrecord-<i>-of-<n>`` files (many empty for a small corpus), no vocabulary.
    """
    first = _first_record(files, "")
    if first is None:
        raise DataError(f"{directory}: its {len(files)} file(s) hold no record")
    path, record = first
    try:
        features = tf.train.Example.FromString(record).features.feature
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError: not a tf.train.Example
        raise DataError(f"{path}: its first record is not a tf.train.Example ({e})") from None
    for fmt, keys in (("original", ORIGINAL_FEATURES), ("electra_tf", {k: k for k in FEATURES})):
        if all(keys[k] in features for k in FEATURES):
            break
    else:
        raise DataError(
            f"{path}: records with features {sorted(features)}; expected "
            f"{sorted(ORIGINAL_FEATURES.values())} (google-research/electra) or "
            f"{sorted(FEATURES)}, or a directory written by pipelines.build_pretraining_data")
    token_ids = features[keys["token_ids"]].int64_list.value
    if len(token_ids) != seq_length:
        raise DataError(f"{path}: records hold {len(token_ids)} tokens ({keys['token_ids']}), "
                        f"config data.seq_length={seq_length}; pass --set "
                        f"data.seq_length={len(token_ids)}")
    if max(token_ids) >= tokenizer.vocab_size:
        raise DataError(f"{path}: its first record holds token id {max(token_ids)}, but the "
                        f"vocabulary {tokenizer.vocab_path} has {tokenizer.vocab_size} tokens; "
                        "set data.vocab_path to the vocabulary the records were made with")
    logger.warning("%s: no metadata.json, reading its records as %s format (%d tokens each, "
                   "from %s); the tokenizer cannot be verified: data.vocab_path and "
                   "data.lower_case must be those the records were made with",
                   directory, fmt, seq_length, path)
    return fmt


def read_metadata(directory: str) -> dict:
    """Reads ``directory/metadata.json`` after checking the ``COMPLETED`` marker."""
    if not tf.io.gfile.exists(os.path.join(directory, "COMPLETED")):
        raise DataError(
            f"{directory}: no COMPLETED marker — the data pipeline has not finished writing this "
            "directory (or it failed); rerun pipelines.build_pretraining_data")
    path = os.path.join(directory, "metadata.json")
    if not tf.io.gfile.exists(path):
        raise DataError(f"{directory}: has COMPLETED but no metadata.json")
    with tf.io.gfile.GFile(path) as f:
        try:
            metadata = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(metadata).__name__}")
    return metadata


def check_metadata(metadata: dict, seq_length: int, tokenizer: Tokenizer, where: str) -> None:
    """Raises DataError listing every way ``metadata`` disagrees with the config/tokenizer."""
    problems = []
    for key in ("format", "seq_length", "tokenizer"):
        if key not in metadata:
            problems.append(f"missing key {key!r}")
    if metadata.get("format", FORMATS[0]) not in FORMATS:
        problems.append(f"format={metadata['format']!r}, expected one of {list(FORMATS)}")
    if metadata.get("compression", "") not in COMPRESSIONS:
        problems.append(f"compression={metadata['compression']!r}, expected one of "
                        f"{list(COMPRESSIONS)}")
    if "seq_length" in metadata and metadata["seq_length"] != seq_length:
        problems.append(f"seq_length: data has {metadata['seq_length']}, config "
                        f"data.seq_length={seq_length}")
    if isinstance(metadata.get("tokenizer"), dict):
        try:
            tokenizer.check_settings(metadata["tokenizer"], where)
        except TokenizerError as e:
            problems.append(str(e))
    if problems:
        raise DataError(f"{where} does not match this run: " + "; ".join(problems))


def _examples_in(metadata: dict, files: list[str]) -> int:
    """Examples in ``files`` when they are exactly one split of the metadata, else 0."""
    for info in metadata.get("splits", {}).values():
        pattern = os.path.join(os.path.dirname(files[0]), info.get("file_pattern", ""))
        if sorted(tf.io.gfile.glob(pattern)) == sorted(files):
            return int(info.get("num_examples", 0))
    return 0


# ---------------------------------------------------------------------------------------------
# Corruption: name the file.

def _records_tf_reads(path: str, compression: str) -> int:
    """Records TensorFlow's reader returns before its first error: can be fewer than
    ``scan_shard`` counts (the GZIP reader loses the whole inflate buffer that fails)."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path, compression_type=compression):
            count += 1
    except tf.errors.DataLossError:
        pass
    return count


def _drop_damage(shards: Shards) -> Shards:
    """Scans all shards; damaged ones keep the records before the damage (``skip_corrupt``)."""
    readable = []
    for scan in scan_shards(shards.files, shards.compression):
        if scan.error:
            records = min(scan.records, _records_tf_reads(scan.path, shards.compression))
            logger.warning("skipping the damaged part of %s: %s; keeping its first %d records",
                           scan.path, scan.error, records)
            readable.append((scan.path, records))
    if readable:
        logger.warning("skip_corrupt: %d of %d shards are damaged", len(readable),
                       len(shards.files))
    files = tuple(f for f in shards.files if dict(readable).get(f, 1) > 0)
    if not files:
        raise DataError(f"every shard is damaged: {[p for p, _ in readable]}")
    return dataclasses.replace(shards, files=files, readable_records=tuple(readable))


def explain_read_error(shards: Shards, error: Exception) -> DataError:
    """Turns TensorFlow's anonymous read error into a DataError naming the damaged shard(s)."""
    damaged = [s for s in scan_shards(shards.files, shards.compression) if s.error]
    if not damaged:
        return DataError(f"reading {len(shards.files)} shards failed, but every shard scans "
                         f"clean: {error}")
    listing = "; ".join(f"{s.path}: {s.error} (after {s.records} good records)" for s in damaged)
    return DataError(f"damaged TFRecord shard(s): {listing}. Re-create them, or pass "
                     "--skip_corrupt to train on the records before the damage")


# ---------------------------------------------------------------------------------------------
# The tf.data pipeline.

def pretraining_dataset(shards: Shards, batch_size: int, seed: int, *, training: bool = True,
                        shuffle_buffer: int = 10000, cycle_length: int = 8,
                        num_input_pipelines: int = 1, input_pipeline_id: int = 0,
                        start_file: int = 0) -> tf.data.Dataset:
    """Batches of pre-training examples from ``shards``.

    Training: shard files are shuffled (reshuffled every pass, seeded) and repeated forever,
    read ``cycle_length`` at a time (deterministic interleave), examples shuffled in a seeded
    buffer, batched with ``drop_remainder`` and prefetched. The order is a function of ``seed``
    alone; the iterator can be saved in a ``tf.train.Checkpoint`` for exact resume.
    Evaluation (``training=False``): files in order, no shuffling, repeated, so any number of
    batches can be drawn and every evaluation sees the same ones.

    Args:
      shards: from :func:`find_shards`.
      batch_size: examples per batch (global, or a replica's under distributed input).
      seed: shuffling seed (``train.seed``).
      shuffle_buffer, cycle_length: ``data.shuffle_buffer`` and ``data.cycle_length``.
      num_input_pipelines, input_pipeline_id: multi-worker/TPU input sharding by file
        (:func:`check_shards_per_pipeline`).
      start_file: skip this many files of this pipeline's (repeated, shuffled) file sequence:
        the file-level resume position of multi-worker/TPU runs.

    Returns:
      A dataset of dicts ``token_ids``, ``segment_ids``, ``padding_mask`` (int32
      [batch, seq_length]) and ``example_index`` (int32 [batch]).
    """
    files = _pipeline_files(shards, num_input_pipelines, input_pipeline_id)
    readable = dict(shards.readable_records)
    takes = [readable.get(f, -1) for f in files]  # take(-1) reads the whole file
    seed = seed + 1000003 * input_pipeline_id  # distinct order per input pipeline

    file_ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(takes, tf.int64)))
    if training:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    file_ds = file_ds.repeat().skip(start_file)

    def read(path, take):
        return tf.data.TFRecordDataset(path, compression_type=shards.compression).take(take)

    ds = file_ds.interleave(read, cycle_length=min(cycle_length, len(files)) if training else 1,
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(record_parser(shards.format, shards.seq_length),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    # We shard by file ourselves (input_pipeline_id); tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def check_shards_per_pipeline(shards: Shards, num_input_pipelines: int) -> None:
    """Refuses shards that cannot give every input pipeline a file holding records.

    Each pipeline (one per worker or TPU host) reads whole files: with fewer files than
    pipelines, one would wait forever. Called before the model is built, so that the user
    learns the ``--num_shards`` needed at once. Raises DataError.
    """
    for pipeline in reversed(range(num_input_pipelines)):  # "too few files" first, as the cause
        _pipeline_files(shards, num_input_pipelines, pipeline)


def _pipeline_files(shards: Shards, num_input_pipelines: int, input_pipeline_id: int) -> list:
    """The files of one input pipeline: ``i % num_input_pipelines == input_pipeline_id``."""
    files = list(shards.files[input_pipeline_id::num_input_pipelines])
    fix = (f"write at least {num_input_pipelines} shards holding records: pipelines."
           f"build_pretraining_data --num_shards={num_input_pipelines} or a multiple (then each "
           "file is read as often); it sets the train split only (validation: by size)")
    if not files:
        raise DataError(f"{len(shards.files)} shard(s) in {os.path.dirname(shards.files[0])} "
                        f"cannot feed {num_input_pipelines} input pipelines (one per worker or "
                        f"TPU host, each reading whole files); {fix}")
    # Repeating only empty files would spin forever. (find_shards checked that all files
    # together hold a record: one pipeline need not read again, e.g. at every evaluation.)
    if num_input_pipelines > 1 and _first_record(files, shards.compression) is None:
        raise DataError(f"input pipeline {input_pipeline_id} of {num_input_pipelines} gets only "
                        f"empty files ({files[0]}{', ...' if len(files) > 1 else ''}); {fix}")
    return files


def resume_file_position(shards: Shards, step: int, global_batch: int, num_input_pipelines: int,
                         cycle_length: int) -> int:
    """``start_file`` for one input pipeline resuming at ``step`` (multi-worker/TPU resume).

    Each pipeline has consumed ``step × global_batch / num_input_pipelines`` examples, read
    ``cycle_length`` files at a time. The files of every *completed* group of ``cycle_length``
    files are skipped; the group in flight is read again from its start, so no record is skipped
    unread and at most one group is repeated. Examples per file are estimated from the
    metadata's ``num_examples`` (0 when unknown: start from the first file).
    """
    files = len(shards.files[::num_input_pipelines]) if num_input_pipelines else 0
    if not step or not shards.num_examples or not files:
        return 0
    per_file = shards.num_examples / len(shards.files)
    consumed = step * global_batch / num_input_pipelines
    group = min(cycle_length, files)
    return int(consumed // (per_file * group)) * group
