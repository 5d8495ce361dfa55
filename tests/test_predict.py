"""Prediction from an export: locally, through TF Serving's REST API and through gRPC.

The servers here are small stand-ins for TF Serving on 127.0.0.1 that *run the exported
SavedModel* and speak TF Serving's wire formats (REST JSON row and columnar formats and the
metadata endpoint; the gRPC PredictionService), so the clients are tested end to end.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from electra_tf import predict
from electra_tf.finetuning.config import build_finetuning_config
from electra_tf.finetuning import classifier
from electra_tf.serving import export
from electra_tf.serving import predict as predict_lib
from electra_tf.serving.client import (GrpcClient, RestClient, ServingError, connect,
                                       parse_server)
from electra_tf.finetuning.tasks import TaskInfo
from electra_tf.tokenizer import tokenizer_from_config

LABELS = ("austen", "moby_dick", "sotu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """exports/books/1 from a randomly initialised debug_tiny classifier."""
    root = tmp_path_factory.mktemp("predict")
    config = build_finetuning_config("debug_tiny", None)
    task = TaskInfo("classification", LABELS, "passage", None, "label")
    model = classifier.build_classifier(config, task.num_outputs, seed=11)
    classifier.save_classifier(str(root / "run"), config, tokenizer_from_config(config.data),
                               task, model)
    export.export_classifier(str(root / "run"), str(root / "books"), echo=lambda line: None)
    return str(root / "books")


@pytest.fixture(scope="module")
def local(model_dir):
    return predict_lib.LocalModel(model_dir)


def _signature_def(model_dir: str):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "1", "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto.meta_graphs[0].signature_def["serving_default"]


# ---------------------------------------------------------------------------------------------
# Stand-in servers.

class _RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API for one model: GET …/metadata and POST …:predict."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _answer(self, status: int, body: dict):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != f"/v1/models/{self.server.model_name}/metadata":
            return self._answer(404, {"error": f"Servable not found for request: {self.path}"})
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(self.server.signature_def)
        self._answer(200, {"model_spec": {"name": self.server.model_name, "version": "1"},
                           "metadata": {"signature_def": json_format.MessageToDict(
                               signatures, preserving_proto_field_name=True)}})

    def do_POST(self):
        if self.path != f"/v1/models/{self.server.model_name}:predict":
            return self._answer(404, {"error": f"Servable not found for request: {self.path}"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            if "instances" in request:  # row format
                rows = request["instances"]
                columns = ({k: [r[k] for r in rows] for k in rows[0]}
                           if rows and isinstance(rows[0], dict) else {"text": rows})
            else:  # columnar format
                columns = request["inputs"]
                columns = columns if isinstance(columns, dict) else {"text": columns}
            outputs = self.server.model.predict_raw(columns)
        except Exception as e:  # TF Serving answers 400 with the reason
            return self._answer(400, {"error": str(e)})
        if "instances" in request:
            names = list(outputs)
            self._answer(200, {"predictions": [dict(zip(names, values))
                                               for values in zip(*outputs.values())]})
        else:
            self._answer(200, {"outputs": outputs})


class _ServedModel:
    """Runs the exported signature on JSON-like columns (strings are checked like TF does)."""

    def __init__(self, model_dir):
        self.fn = tf.saved_model.load(os.path.join(model_dir, "1")).signatures["serving_default"]

    def predict_raw(self, columns: dict) -> dict:
        for name, values in columns.items():
            for value in values:
                if not isinstance(value, str):
                    raise ValueError(f"JSON Value: {json.dumps(value)} Type: "
                                     f"{type(value).__name__} is not of expected type: string")
        out = self.fn(**{k: tf.constant(v, tf.string) for k, v in columns.items()})
        return {k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                for k, v in out.items()}


@pytest.fixture(scope="module")
def rest_server(model_dir):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RestHandler)
    server.model_name = "books"
    server.model = _ServedModel(model_dir)
    server.signature_def = _signature_def(model_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model_dir):
        self.model = _ServedModel(model_dir)
        self.signature_def = _signature_def(model_dir)

    def GetModelMetadata(self, request, context):
        if request.model_spec.name != "books":
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable {request.model_spec.name}")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(self.signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = "books"
        response.metadata["signature_def"].Pack(signatures)
        return response

    def Predict(self, request, context):
        columns = {k: [v.decode() for v in tf.make_ndarray(t).tolist()]
                   for k, t in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        for name, values in self.model.predict_raw(columns).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(values))
        return response


@pytest.fixture(scope="module")
def grpc_server(model_dir):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(model_dir), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"grpc://127.0.0.1:{port}"
    server.stop(None)


# ---------------------------------------------------------------------------------------------
# Tests.

TEXTS = ["It is a truth universally acknowledged.", "", "Call me Ishmael. " * 80,
         "Ünïcödé — 日本語"]


def test_local_model_edge_cases(local, model_dir):
    out = local.predict({"text": TEXTS})
    assert out["probabilities"].shape == (4, 3) and set(out["label"]) <= set(LABELS)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    # Truncation: a text longer than seq_length (32) predicts as its first 30 tokens.
    words = ["river", "house", "green", "music", "alpha"] * 20  # one WordPiece each
    long, head = " ".join(words), " ".join(words[:30])
    truncated = local.predict({"text": [long, head]})["logits"]
    np.testing.assert_allclose(truncated[0], truncated[1], atol=1e-6)
    assert local.predict({"text": []})["probabilities"].shape == (0, 3)
    with pytest.raises(ServingError, match=r"input 'text' row 1: 3 \(int\) is not a string"):
        local.predict({"text": ["ok", 3]})
    with pytest.raises(ServingError, match=r"takes inputs \['text'\], the request has "
                                           r"\['text', 'text_b'\]"):
        local.predict({"text": ["a"], "text_b": ["b"]})
    # The signature takes string [batch]: a bare string (once predicted per character) and a
    # 2-D array (once a "Graph execution error") are refused by name, before a model loads.
    with pytest.raises(ServingError, match=r"^input 'text' is a str; expected a list of "
                                           r"strings, shape \[batch\]$"):
        predict_lib.predict_texts(model_dir, "one text")
    with pytest.raises(ServingError, match=r"^input 'text' has shape \[1, 2\]; expected a list "
                                           r"of strings, shape \[batch\]$"):
        local.predict({"text": np.array([["a", "b"]])})


def test_predict_cli_tsv_and_jsonl(model_dir, local, tmp_path, capsys):
    source = tmp_path / "in.tsv"
    source.write_text("id\tpassage\n" + "".join(f"{i}\t{t}\n" for i, t in
                                                enumerate(TEXTS)), encoding="utf-8")
    out_jsonl = tmp_path / "out.jsonl"
    # The text column defaults to the one the model was fine-tuned on ("passage").
    assert predict.main(["--model", model_dir, "--input", str(source), "--output",
                         str(out_jsonl), "--batch_size", "3"]) == 0
    rows = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    expected = local.predict({"text": TEXTS})
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["label"] for r in rows] == expected["label"].tolist()
    for row, probs in zip(rows, expected["probabilities"]):
        assert list(row["probabilities"]) == list(LABELS)
        np.testing.assert_allclose(list(row["probabilities"].values()), probs, atol=1e-6)
    out_tsv = tmp_path / "out.tsv"
    assert predict.main(["--model", model_dir, "--version", "1", "--input", str(source),
                         "--output", str(out_tsv)]) == 0
    header, *lines = out_tsv.read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["id", "passage", "label", "p_austen", "p_moby_dick",
                                  "p_sotu"]
    assert len(lines) == 4 and "predicted 4 rows" in capsys.readouterr().err
    # A pipe or device (/dev/stdout) is written in place, not replaced by a renamed file.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text(encoding="utf-8")))
    reader.start()
    assert predict.main(["--model", model_dir, "--input", str(source), "--output",
                         str(pipe)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and len(received[0].splitlines()) == 4
    # So is a link, as /dev/stdout is (to /proc/self/fd/1, maybe a redirected file): it stays one.
    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    target.write_text("", encoding="utf-8")
    link.symlink_to(target)
    assert predict.main(["--model", model_dir, "--input", str(source), "--output",
                         str(link)]) == 0
    assert link.is_symlink() and len(target.read_text(encoding="utf-8").splitlines()) == 4


def test_predict_cli_writes_one_row_per_input_row_or_nothing(model_dir, local, tmp_path,
                                                            capsys):
    # Issue: an unclosed quote made 1 prediction for 5 rows, exit 0. TSV quotes are text; blank
    # lines are marked in place; a bad row refuses the file before anything is written.
    texts = ["fine", '"unclosed start', "three", "four"]
    source = tmp_path / "in.tsv"
    source.write_text("passage\n" + "\n".join(texts[:2] + ["", texts[2], "", texts[3]]) + "\n",
                      encoding="utf-8")
    expected = local.predict({"text": texts})["label"].tolist()
    for output in ("out.jsonl", "out.tsv"):
        assert predict.main(["--model", model_dir, "--input", str(source), "--output",
                             str(tmp_path / output), "--batch_size", "2"]) == 0
        assert "predicted 4 rows, marked 2 blank lines" in capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r.get("passage") for r in rows] == texts[:2] + [None, texts[2], None, texts[3]]
    assert [r.get("label") for r in rows] == expected[:2] + [None, expected[2], None, expected[3]]
    assert rows[2] == {"skipped": "blank line 4"} and rows[4] == {"skipped": "blank line 6"}
    header, *lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert header.split("\t")[-1] == "skipped" and len(lines) == 6
    assert lines[2].split("\t")[-1] == "blank line 4"
    unclosed = tmp_path / "in.csv"
    unclosed.write_text('passage\nfine\n"unclosed start\nthree\nfour\nfive\n', encoding="utf-8")
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("passage\n" + "ok\n" * 9 + "bad\textra\n", encoding="utf-8")
    for bad, message in ((unclosed, "in.csv:3: not valid CSV (unexpected end of data"),
                         (ragged, "ragged.tsv:11: 2 fields, expected 1 (passage)")):
        output = tmp_path / f"{bad.name}.jsonl"
        assert predict.main(["--model", model_dir, "--input", str(bad), "--output",
                             str(output), "--batch_size", "2"]) == 2
        assert message in capsys.readouterr().err
        assert not output.exists() and not os.path.exists(f"{output}.partial")


def test_predict_cli_bad_input_is_one_clear_line(model_dir, tmp_path, capsys):
    bad_type = tmp_path / "bad.jsonl"
    bad_type.write_text('{"passage": "fine"}\n{"passage": 42}\n', encoding="utf-8")
    missing = tmp_path / "missing.tsv"
    missing.write_text("text\nhello\n", encoding="utf-8")
    cases = [
        (["--model", model_dir, "--input", str(bad_type)],
         "bad.jsonl:2: column 'passage' holds 42 (int), expected a string"),
        (["--model", model_dir, "--input", str(missing)],
         "missing.tsv: no column 'passage'; columns present: text"),
        (["--model", model_dir, "--version", "7", "--input", str(missing)],
         "no saved_model.pb (versions present: [1])"),
        (["--model", model_dir, "--input", str(tmp_path / "nope.tsv")], "nope.tsv: no such file"),
        (["--server", "localhost:port", "--model_name", "m", "--input", str(missing)],
         "is not of the form [http://|grpc://]host:port"),
    ]
    for argv, message in cases:
        assert predict.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def test_rest_client_against_a_served_savedmodel(rest_server, local, model_dir, tmp_path,
                                                 capsys):
    client = connect(rest_server, "books")
    assert isinstance(client, RestClient)
    assert client.signature() == {"inputs": ["text"],
                                  "outputs": ["label", "logits", "probabilities"]}
    served, expected = client.predict({"text": TEXTS}), local.predict({"text": TEXTS})
    assert served["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)
    # The columnar format of the same endpoint answers with "outputs".
    request = urllib.request.Request(
        f"{rest_server}/v1/models/books:predict", headers={"Content-Type": "application/json"},
        data=json.dumps({"inputs": {"text": TEXTS[:2]}}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        columnar = json.loads(response.read())["outputs"]
    np.testing.assert_allclose(columnar["logits"], expected["logits"][:2], atol=1e-6)
    # Errors: the client refuses non-strings itself; the server's 400 and 404 become one line.
    with pytest.raises(ServingError, match="row 0: None"):
        client.predict({"text": [None]})
    with pytest.raises(ServingError, match=r"input 'text' is a str; expected a list"):
        client.predict({"text": "one text"})
    with pytest.raises(ServingError, match=r"answered HTTP 400: JSON Value: 5 Type: int is not "
                                           r"of expected type: string"):
        client._call(client.base + ":predict", {"instances": [{"text": 5}]})
    with pytest.raises(ServingError, match=r"/v1/models/nope/metadata answered HTTP 404"):
        RestClient(rest_server, "nope").predict({"text": ["a"]})
    # The CLI through the server, label names from the export directory.
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"passage": t}) + "\n" for t in TEXTS),
                      encoding="utf-8")
    assert predict.main(["--server", rest_server, "--model", model_dir, "--input",
                         str(source), "--output", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == expected["label"].tolist()
    assert list(rows[0]["probabilities"]) == list(LABELS)


def test_grpc_client_against_a_served_savedmodel(grpc_server, local):
    client = connect(grpc_server, "books")
    assert isinstance(client, GrpcClient)
    served, expected = client.predict({"text": TEXTS}), local.predict({"text": TEXTS})
    assert served["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)
    with pytest.raises(ServingError, match=r"\(nope\): NOT_FOUND"):
        GrpcClient(grpc_server, "nope").predict({"text": ["a"]})


def test_parse_server_addresses():
    assert parse_server("localhost:8501") == parse_server("http://localhost:8501")
    assert parse_server("localhost:8501").protocol == "rest"
    assert parse_server("10.0.0.1:8500").protocol == "grpc"
    assert parse_server("grpc://h:9000").protocol == "grpc"
    assert str(parse_server("h:1234")) == "http://h:1234"
    with pytest.raises(ServingError, match="not of the form"):
        parse_server("8501")
