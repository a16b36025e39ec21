import pytest

from bench.errors import UsageError
from bench.zoo.names import UserModel, ZooModel, parse_model


def test_defaults_are_filled_in_and_canonical_name_omits_them():
    model = parse_model("mobilenet_v2")
    assert isinstance(model, ZooModel)
    assert (model.size, model.alpha, model.weights, model.seed) == (224, 1.0, "random", 0)
    assert parse_model("mobilenet_v2@224,alpha=1.0").name == "mobilenet_v2"


def test_size_and_options():
    model = parse_model("mobilenet_v2@160,alpha=0.5")
    assert (model.size, model.alpha) == (160, 0.5)
    assert model.name == "mobilenet_v2@160,alpha=0.5"
    assert parse_model("resnet50,seed=3").name == "resnet50,seed=3"
    assert parse_model("inception_v3").size == 299


def test_key_changes_with_every_option():
    keys = {str(parse_model(n).key()) for n in
            ("mobilenet_v2", "mobilenet_v2@160", "mobilenet_v2,alpha=0.5", "mobilenet_v2,seed=1")}
    assert len(keys) == 4


@pytest.mark.parametrize("text, fragment", [
    ("mobilenet_v9", "unknown zoo model 'mobilenet_v9'"),
    ("resnet50,alpha=0.5", "no width multiplier"),
    ("mobilenet_v2,alpha=0.3", "alpha 0.3 not supported"),
    ("mobilenet_v2,depth=3", "unknown option(s) depth"),
    ("mobilenet_v2@8", "out of range"),
    ("mobilenet_v2:imagenet@160", "trained at 224 pixels; drop @160"),
    ("mobilenet_v2:imagenet,alpha=0.5", "width 1 only; drop alpha=0.5"),
    ("mobilenet_v2:imagenet,seed=3", "seed= draws random weights"),
    ("mobilenet_v2:coco", "no 'coco' weights; its weight sources: random, imagenet"),
    ("resnet50:imagenet", "no 'imagenet' weights; its weight sources: random"),
    ("efficientnet_lite0:imagenet@260", "trained at 224 pixels; drop @260"),
    ("mobilenet_v2:keras-imagenet@100", "trained at 96/128/160/192/224 pixels; drop @100"),
    ("mobilenet_v1:keras-imagenet,seed=2", "seed= draws random weights"),
    ("Mobile Net", "cannot read model name"),
    ("missing/model.tflite", "model file not found"),
])
def test_bad_names_say_what_is_wrong(text, fragment):
    with pytest.raises(UsageError, match=None) as error:
        parse_model(text)
    assert fragment in str(error.value)


def test_paths_become_user_models(tmp_path):
    model = tmp_path / "net.tflite"
    model.write_bytes(b"x")
    parsed = parse_model(str(model))
    assert isinstance(parsed, UserModel) and parsed.kind == "tflite" and parsed.name == "net"
    saved = tmp_path / "saved"
    saved.mkdir()
    with pytest.raises(UsageError, match="without saved_model.pb"):
        parse_model(str(saved))
    (saved / "saved_model.pb").write_bytes(b"")
    assert parse_model(str(saved)).kind == "saved_model"


def test_trained_weights_are_part_of_the_name_and_the_cache_key():
    from bench.zoo.assets import MOBILENET_V2_SHA256

    trained = parse_model("mobilenet_v2:imagenet")
    assert trained.name == "mobilenet_v2:imagenet" and not trained.random_weights
    assert parse_model("mobilenet_v2:imagenet@224,alpha=1.0") == trained
    key = trained.key()
    assert key["weights_source"]["sha256"] == MOBILENET_V2_SHA256 and key["seed"] is None
    assert "weights_source" not in parse_model("mobilenet_v2").key()


def test_trained_weights_calibrate_on_photographs_and_random_ones_keep_their_key():
    from bench.zoo.build import BuildOptions, variant_key

    options = BuildOptions()
    trained = variant_key(parse_model("mobilenet_v2:imagenet"), "int8", options)
    random = variant_key(parse_model("mobilenet_v2"), "int8", options)
    assert trained["calibration"]["data"] == "skimage-natural"
    assert random["calibration"]["data"] == "uniform[-1,1]"  # cached variants stay valid


def test_keras_imagenet_weights_are_a_source_with_their_own_preprocessing():
    model = parse_model("mobilenet_v1:keras-imagenet@128,alpha=0.25")
    assert not model.random_weights and model.weight_source.online
    assert model.weight_source.preprocessing == "keras-mobilenet"
    other = parse_model("mobilenet_v1:keras-imagenet@160,alpha=0.25")
    assert model.key() != other.key() != parse_model("mobilenet_v1@160,alpha=0.25").key()
    assert parse_model("mobilenet_v2:keras-imagenet").key()["weights_source"][
        "keras_applications"] == "MobileNetV2"


def test_keras_imagenet_weights_offline_fail_with_what_to_do(monkeypatch):
    import keras

    from bench.zoo.architectures import ARCHITECTURES

    def offline(**options):
        assert options["weights"] == "imagenet" and options["input_shape"] == (128, 128, 3)
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(keras.applications, "MobileNet", offline)
    source = ARCHITECTURES["mobilenet_v1"].weights("keras-imagenet")
    with pytest.raises(RuntimeError) as error:
        source.build_fn(128, 0.25)
    text = str(error.value)
    assert "Name or service not known" in text and "connect this machine" in text
    assert "~/.keras/models" in text and "alpha 0.25" in text
