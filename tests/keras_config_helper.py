"""One check for every electra_tf layer and model: ``get_config`` survives a JSON round trip.

Usage::

    from keras_config_helper import assert_config_round_trip
    assert_config_round_trip(layer)
"""

from __future__ import annotations

import json

import keras


def assert_config_round_trip(obj: keras.layers.Layer) -> keras.layers.Layer:
    """Serializes ``obj`` to JSON text, rebuilds it, and checks the rebuilt config is equal.

    Returns:
      The rebuilt object (same class, not built), for further checks.
    """
    # Compared as JSON: tuples in build configs legitimately come back as lists.
    config = json.loads(json.dumps(obj.get_config()))
    text = json.dumps(keras.saving.serialize_keras_object(obj))
    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(clone) is type(obj), f"{type(obj).__name__} came back as {type(clone).__name__}"
    clone_config = json.loads(json.dumps(clone.get_config()))
    assert clone_config == config, (
        f"{type(obj).__name__} config changed in the JSON round trip:\n{config}\n{clone_config}")
    return clone
