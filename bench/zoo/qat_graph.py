"""A user's Keras 3 model, rebuilt layer by layer with tf_keras for quantization-aware training.

tensorflow-model-optimization wraps tf_keras (Keras 2) models only, and tf_keras cannot read a
file Keras 3 wrote (`.keras` configs name Keras 3 classes, `.h5` configs use Keras 3
arguments such as `batch_shape`). So the conversion worker (Keras 3) describes the model's
graph from its config (`describe_graph`: each layer's class, config and inputs) and the QAT
worker builds the same graph from tf_keras layers of the same classes (`build_graph`). The
weights are then carried over layer by layer and the logits compared (`bench.zoo.qat_worker`):
a graph rebuilt wrong is a failed check, not a silently different model.

What is translated: the layer's dtype policy (a name in tf_keras), initializers (dropped:
the weights are set afterwards), regularizers and constraints (their class and config), and
arguments tf_keras does not know (dropped, as its error names them). Supported: functional
and sequential models of built-in layers, each layer called once. Nested models, shared
layers and custom layers are refused with the reason.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_TENSOR = "__keras_tensor__"
_MODELS = frozenset({"Functional", "Sequential", "Model"})


def describe_graph(model: Any) -> dict:
    """The graph of a Keras 3 functional or sequential model: {"name", "layers": [{"name",
    "class_name", "config", "args"}], "inputs": [name], "outputs": [[name, node, tensor]]}.
    `args` are the layer's call arguments, each tensor as {"ref": [layer, node, index]}."""
    config = model.get_config()
    entries = config.get("layers") or []
    layers: list[dict] = []
    if type(model).__name__ == "Sequential":
        previous = None
        for entry in entries:
            _refuse_nested(entry)
            name = entry.get("name") or entry["config"]["name"]
            args = [] if previous is None else [{"ref": [previous, 0, 0]}]
            layers.append({"name": name, "class_name": entry["class_name"],
                           "config": entry["config"], "args": args})
            previous = name
        if not layers or layers[0]["class_name"] != "InputLayer":
            shape = [None, *(int(d) for d in model.inputs[0].shape[1:])]
            layers.insert(0, {"name": "input", "class_name": "InputLayer",
                              "config": {"batch_shape": shape, "name": "input"}, "args": []})
            if len(layers) > 1:
                layers[1]["args"] = [{"ref": ["input", 0, 0]}]
        return {"name": config.get("name", "model"), "layers": layers,
                "inputs": [layers[0]["name"]], "outputs": [[layers[-1]["name"], 0, 0]]}
    for entry in entries:
        _refuse_nested(entry)
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise ValueError(f"layer {entry['name']} is called {len(nodes)} times (a shared "
                             "layer): not supported for QAT")
        args = _refs(nodes[0].get("args", [])) if nodes else []
        if nodes and _has_tensor(nodes[0].get("kwargs", {})):
            raise ValueError(f"layer {entry['name']} takes a tensor as a keyword argument: "
                             "not supported for QAT")
        layers.append({"name": entry["name"], "class_name": entry["class_name"],
                       "config": entry["config"], "args": args})
    return {"name": config.get("name", "model"), "layers": layers,
            "inputs": [ref[0] for ref in _ref_list(config["input_layers"])],
            "outputs": _ref_list(config["output_layers"])}


def _refuse_nested(entry: dict) -> None:
    if entry.get("class_name") in _MODELS:
        raise ValueError(f"layer {entry.get('name') or entry['config'].get('name')} is a "
                         "model inside the model: not supported for QAT (flatten it)")


def _ref_list(value: Any) -> list[list]:
    """Keras writes one input as [name, node, index] and several as a list of those."""
    if value and isinstance(value[0], str):
        return [list(value)]
    return [list(v) for v in value]


def _refs(value: Any) -> Any:
    """Call arguments with each serialized tensor replaced by {"ref": [layer, node, i]}."""
    if isinstance(value, dict):
        if value.get("class_name") == _TENSOR:
            return {"ref": list(value["config"]["keras_history"])}
        return {k: _refs(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_refs(v) for v in value]
    return value


def _has_tensor(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("class_name") == _TENSOR or any(_has_tensor(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_tensor(v) for v in value)
    return False


def _dtype(value: Any) -> Any:
    if isinstance(value, dict):  # a Keras 3 DTypePolicy
        return (value.get("config") or {}).get("name", "float32")
    return value


def _serialized(value: Any) -> Any:
    """A Keras 3 serialized object ({"module", "class_name", "config", ...}) as tf_keras
    reads one ({"class_name", "config"})."""
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"], "config": value.get("config") or {}}
    return value


def layer_config(config: dict) -> dict:
    """A Keras 3 layer config as tf_keras reads one."""
    found = {}
    for key, value in config.items():
        if key.endswith("_initializer"):
            continue  # the weights are set from the Keras 3 model
        if key == "dtype":
            value = _dtype(value)
        elif key.endswith(("_regularizer", "_constraint")):
            value = _serialized(value)
        found[key] = value
    return found


# What tf_keras's base Layer takes through **kwargs besides its named arguments.
_LAYER_KWARGS = frozenset({"input_dim", "input_shape", "batch_input_shape", "batch_size",
                           "weights", "activity_regularizer", "autocast", "implementation"})
_NOT_UNDERSTOOD = re.compile(r"(?:not understood:?'?,? '|keyword argument ')(\w+)'")


def accepted_arguments(layer_class: Any) -> set[str]:
    """The arguments a tf_keras layer class takes: every named argument of the __init__ of
    each class it derives from, and what the base Layer takes through **kwargs."""
    names = set(_LAYER_KWARGS)
    for klass in layer_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(p.name for p in parameters
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
    return names


def make_layer(keras: Any, class_name: str, config: dict) -> Any:
    """A tf_keras layer of `class_name` from a Keras 3 config; arguments tf_keras does not
    take (Keras 3 additions such as `quantization_config`) are dropped."""
    layer_class = getattr(keras.layers, class_name, None)
    if layer_class is None:
        raise ValueError(f"layer {config.get('name')}: tf_keras has no layer {class_name} "
                         "(a custom layer?): not supported for QAT")
    accepted = accepted_arguments(layer_class)
    found = {k: v for k, v in layer_config(config).items() if k in accepted}
    for _ in range(8):
        try:
            return layer_class.from_config(found)
        except (TypeError, ValueError) as exc:
            match = _NOT_UNDERSTOOD.search(str(exc))
            if not match or match.group(1) not in found:
                raise
            found.pop(match.group(1))
    raise ValueError(f"layer {config.get('name')}: tf_keras cannot make a {class_name} of it")


def _resolve(value: Any, tensors: dict) -> Any:
    if isinstance(value, dict) and "ref" in value:
        name, node, index = value["ref"]
        if (name, index) not in tensors:
            raise ValueError(f"layer input {name}[{node}][{index}] is not built yet")
        return tensors[name, index]
    if isinstance(value, list):
        return [_resolve(v, tensors) for v in value]
    return value


def build_graph(description: dict, keras: Any) -> Any:
    """The described graph as a tf_keras model (random weights: the caller sets them)."""
    tensors: dict[tuple[str, int], Any] = {}
    for entry in description["layers"]:
        name, class_name, config = entry["name"], entry["class_name"], entry["config"]
        if class_name == "InputLayer":
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            tensors[name, 0] = keras.Input(shape=tuple(shape[1:]), name=name,
                                           dtype=_dtype(config.get("dtype")) or "float32")
            continue
        layer = make_layer(keras, class_name, config)
        outputs = layer(*_resolve(entry["args"], tensors))
        for index, tensor in enumerate(outputs if isinstance(outputs, list | tuple)
                                       else [outputs]):
            tensors[name, index] = tensor
    inputs = [tensors[name, 0] for name in description["inputs"]]
    outputs = [tensors[name, index] for name, _, index in description["outputs"]]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                       outputs[0] if len(outputs) == 1 else outputs,
                       name=description.get("name") or "model")
