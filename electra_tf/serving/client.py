"""A small client for a running TF Serving: REST (port 8501) or gRPC (port 8500).

Both clients have the interface of :class:`electra_tf.serving.predict.LocalModel`:
``signature() -> {"inputs": [...], "outputs": [...]}`` and
``predict({"text": [...], "text_b": [...]}) -> {output name: numpy array}`` (string outputs as
``str``). Every failure — unreachable server, unknown model, rejected request, a non-string
input — raises :class:`ServingError` with a message that names the server and the cause.

Addresses: ``http://host:port`` is REST, ``grpc://host:port`` is gRPC; a bare ``host:port`` is
gRPC on port 8500 (TF Serving's default gRPC port) and REST on any other port.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Optional

import numpy as np

SIGNATURE = "serving_default"


class ServingError(RuntimeError):
    """A request to TF Serving failed; the message says which server and why."""


@dataclasses.dataclass(frozen=True)
class ServerAddress:
    """Protocol (``rest`` or ``grpc``), host and port of a TF Serving instance."""

    protocol: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{'http' if self.protocol == 'rest' else 'grpc'}://{self.host}:{self.port}"


def parse_server(text: str) -> ServerAddress:
    """``[http://|grpc://]host:port`` → :class:`ServerAddress` (see the module docstring)."""
    protocol = None
    rest = text.strip()
    for scheme, name in (("http://", "rest"), ("grpc://", "grpc")):
        if rest.startswith(scheme):
            protocol, rest = name, rest[len(scheme):]
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ServingError(f"server {text!r} is not of the form [http://|grpc://]host:port "
                           "(e.g. localhost:8501 for REST, localhost:8500 for gRPC)")
    port_number = int(port)
    protocol = protocol or ("grpc" if port_number == 8500 else "rest")
    return ServerAddress(protocol, host, port_number)


def check_texts(inputs: dict[str, list]) -> None:
    """Every input is a list of ``str`` of one common length (names the offending row).

    The signature takes string [batch]: a bare string would otherwise be iterated as one
    text per character, and a nested list (refused by the row check) reach the graph as a 2-D
    tensor.
    """
    for name, values in inputs.items():
        if isinstance(values, np.ndarray) and values.ndim != 1:
            raise ServingError(f"input {name!r} has shape {list(values.shape)}; expected a list "
                               "of strings, shape [batch]")
        if not isinstance(values, (list, tuple, np.ndarray)):
            raise ServingError(f"input {name!r} is a {type(values).__name__}; expected a list "
                               "of strings, shape [batch]")
    lengths = {name: len(values) for name, values in inputs.items()}
    if len(set(lengths.values())) > 1:
        raise ServingError(f"inputs have different lengths: {lengths}")
    for name, values in inputs.items():
        for row, value in enumerate(values):
            if not isinstance(value, str):
                raise ServingError(f"input {name!r} row {row}: {value!r} "
                                   f"({type(value).__name__}) is not a string")


def _check_input_names(inputs: dict, signature: dict, where: str) -> None:
    wanted, given = sorted(signature["inputs"]), sorted(inputs)
    if wanted != given:
        raise ServingError(f"{where} takes inputs {wanted}, the request has {given}")


class RestClient:
    """TF Serving's REST API (``/v1/models/NAME[/versions/N]:predict`` and ``/metadata``).

    Args:
      server: ``host:port`` or :class:`ServerAddress`.
      model_name: the served model's name (``MODEL_NAME`` of the container).
      version: a specific version; None for the one TF Serving serves by default (the latest).
      timeout: seconds per HTTP request.
    """

    def __init__(self, server, model_name: str, version: Optional[int] = None,
                 timeout: float = 30.0):
        self.address = server if isinstance(server, ServerAddress) else parse_server(server)
        path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
        self.base = f"http://{self.address.host}:{self.address.port}{path}"
        self.timeout = timeout
        self._signature: Optional[dict] = None

    def _call(self, url: str, body: Optional[dict] = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise ServingError(f"{url} answered HTTP {e.code}: {_error_text(e)}") from None
        except OSError as e:  # URLError, refused connections, timeouts
            raise ServingError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
        except json.JSONDecodeError as e:
            raise ServingError(f"{url} did not answer JSON ({e})") from None

    def signature(self) -> dict:
        """Input and output names of ``serving_default`` (from the metadata endpoint)."""
        if self._signature is None:
            meta = self._call(self.base + "/metadata")
            try:
                sig = meta["metadata"]["signature_def"]["signature_def"][SIGNATURE]
            except (KeyError, TypeError):
                raise ServingError(f"{self.base}/metadata has no {SIGNATURE} signature") from None
            self._signature = {"inputs": sorted(sig["inputs"]), "outputs": sorted(sig["outputs"])}
        return self._signature

    def predict(self, inputs: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """Runs ``serving_default`` on columns of texts; returns one array per output."""
        check_texts(inputs)
        signature = self.signature()
        _check_input_names(inputs, signature, self.base)
        names = list(inputs)
        instances = [dict(zip(names, row)) for row in zip(*inputs.values())]
        answer = self._call(self.base + ":predict",
                            {"signature_name": SIGNATURE, "instances": instances})
        predictions = answer.get("predictions")
        if not isinstance(predictions, list):
            raise ServingError(f"{self.base}:predict answered without predictions: "
                               f"{str(answer)[:200]}")
        if len(signature["outputs"]) == 1:
            # TF Serving leaves out the output name when the signature has only one.
            predictions = [{signature["outputs"][0]: p} for p in predictions]
        return {name: np.asarray([p[name] for p in predictions]) for name in signature["outputs"]}


def _error_text(error: urllib.error.HTTPError) -> str:
    body = error.read().decode("utf-8", "replace")
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body[:500] or error.reason


class GrpcClient:
    """TF Serving's gRPC ``PredictionService`` (needs ``tensorflow-serving-api``).

    Same arguments as :class:`RestClient`.
    """

    def __init__(self, server, model_name: str, version: Optional[int] = None,
                 timeout: float = 30.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.address = server if isinstance(server, ServerAddress) else parse_server(server)
        self.model_name, self.version, self.timeout = model_name, version, timeout
        self._grpc = grpc
        channel = grpc.insecure_channel(f"{self.address.host}:{self.address.port}")
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._signature: Optional[dict] = None

    def _model_spec(self, spec) -> None:
        spec.name = self.model_name
        spec.signature_name = SIGNATURE
        if self.version:
            spec.version.value = self.version

    def _rpc(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ServingError(f"{self.address} ({self.model_name}): {e.code().name}: "
                               f"{e.details()}") from None

    def signature(self) -> dict:
        if self._signature is None:
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            self._model_spec(request.model_spec)
            response = self._rpc(self._stub.GetModelMetadata, request)
            defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(defs)
            if SIGNATURE not in defs.signature_def:
                raise ServingError(f"{self.address} ({self.model_name}) has no {SIGNATURE}")
            sig = defs.signature_def[SIGNATURE]
            self._signature = {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}
        return self._signature

    def predict(self, inputs: dict[str, list[str]]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        check_texts(inputs)
        _check_input_names(inputs, self.signature(), f"{self.address} ({self.model_name})")
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec)
        for name, values in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values, tf.string))
        response = self._rpc(self._stub.Predict, request)
        outputs = {}
        for name, proto in response.outputs.items():
            array = tf.make_ndarray(proto)
            if array.dtype == object:
                array = np.asarray([v.decode("utf-8") for v in array.reshape(-1)]).reshape(
                    array.shape)
            outputs[name] = array
        return outputs


def connect(server: str, model_name: str, version: Optional[int] = None,
            timeout: float = 30.0):
    """A :class:`RestClient` or :class:`GrpcClient` for ``server`` (see :func:`parse_server`)."""
    address = parse_server(server)
    cls = GrpcClient if address.protocol == "grpc" else RestClient
    return cls(address, model_name, version, timeout)
