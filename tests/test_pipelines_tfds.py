"""TFDS input: a real (tiny) dataset builder prepared into a temporary data_dir."""

import os

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.build_pretraining_data import BuildOptions, build_pretraining_data
from pipelines.inputs import InputOptions, PipelineError


class ElectraTfTinyText(tfds.core.GeneratorBasedBuilder):
    """20 short two-line documents in `train`, 3 in `test`."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(), "id": tfds.features.Scalar(dtype=tf.int64)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"text": f"Document number {i} begins here.\nIts second line ends it.",
                      "id": i}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    ElectraTfTinyText(data_dir=directory).download_and_prepare()
    return directory


def _build(data_dir, out, split="train", feature="text"):
    return build_pretraining_data(BuildOptions(
        output_dir=str(out), input=InputOptions(tfds=f"electra_tf_tiny_text:{split}",
                                                tfds_data_dir=data_dir,
                                                tfds_text_feature=feature),
        max_seq_length=16, validation_fraction=0.0))


def _records(out):
    return {r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(
        os.path.join(out, "train-*.tfrecord")))}


def test_tfds_split_becomes_examples(data_dir, tmp_path):
    metadata = _build(data_dir, tmp_path / "all")
    counts = metadata["counts"]
    assert (counts["files"], counts["documents"], counts["lines"]) == (1, 20, 40)
    assert counts["tokens_in"] == counts["tokens_written"] == 20 * 12
    assert metadata["splits"]["train"]["num_examples"] == len(_records(tmp_path / "all")) >= 20
    assert metadata["options"]["input"]["tfds"] == "electra_tf_tiny_text:train"
    # A sub-split keeps each example's document index, so its examples are the same ones.
    _build(data_dir, tmp_path / "part", split="train[5:10]")
    part = _records(tmp_path / "part")
    assert 5 <= len(part) and part <= _records(tmp_path / "all")


def test_tfds_problems_are_reported_before_any_work(data_dir, tmp_path):
    for kwargs, message in [(dict(feature="id"), "is not text"),
                            (dict(feature="title"), "not a feature"),
                            (dict(split="validation"), "split 'validation'")]:
        with pytest.raises(PipelineError, match=message):
            _build(data_dir, tmp_path / "never", **kwargs)
    with pytest.raises(PipelineError, match="no_such_dataset"):
        build_pretraining_data(BuildOptions(output_dir=str(tmp_path / "never"), input=InputOptions(
            tfds="no_such_dataset", tfds_data_dir=data_dir)))
    assert not (tmp_path / "never").exists()
