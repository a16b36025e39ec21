"""`bench run`'s quantization-aware training recipes (fp32-ft, qat-int8, qat-w4) on a labelled
folder: built through VariantBuilder by the real workers, in a harness process that never
imports tfmot or tf_keras; usage errors said before anything is built; the existing recipes'
cache keys unchanged by the feature.

The build runs once per module in a subprocess standing in for the harness (so what that
process imported can be checked), on tiny_cnn and a user's Keras file of the same network,
with a folder of random PNGs in numeric class folders 0, 37 and 99 (tiny_cnn has 100
outputs). Random weights fine-tuned on random images measure nothing of accuracy: these
tests check what the files hold and how they were made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.commands.run import check_training_disjoint
from bench.errors import UsageError
from bench.zoo.build import (
    BuildOptions,
    VariantBuilder,
    check_training,
    converter_version,
    training_choice,
    variant_key,
)
from bench.zoo.cache import VariantCache, key_hash
from bench.zoo.inspect import inspect_tflite
from bench.zoo.names import parse_model
from bench.zoo.recipes import (
    ALL_RECIPES,
    DEFAULT_RECIPES,
    QAT_VERSION,
    TRAINING_RECIPES,
    parse_recipes,
)
from bench.zoo.weight_levels import check_levels
from tests.conftest import REPO, run_bench

CLASSES = (0, 37, 99)
QAT = ("fp32-ft", "qat-int8", "qat-w4")


def write_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / str(label)).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / str(label) / f"{index}.png")
    return root


HARNESS = textwrap.dedent("""
    import json, os, sys
    from bench.zoo.build import BuildOptions, VariantBuilder, training_choice
    from bench.zoo.cache import VariantCache
    from bench.zoo.names import parse_models

    cache, train, keras_file = sys.argv[1:4]
    options = BuildOptions(calibration_size=8, train_data=training_choice(train))
    builder = VariantBuilder(VariantCache(cache), options, on_event=print)
    built = builder.build(parse_models(["tiny_cnn", keras_file]), ["fp32", "qat-int8", "qat-w4"])
    print("RESULT " + json.dumps({
        "variants": {f"{m}|{r}": v.to_dict() for (m, r), v in built.items()},
        "converted": builder.converted,
        "modules": sorted(m for m in sys.modules
                          if m.split(".")[0] in ("tensorflow_model_optimization", "tf_keras",
                                                 "tensorflow", "keras")),
        "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"),
    }))
""")

SAVE_KERAS = textwrap.dedent("""
    import sys
    from bench.zoo.architectures import ARCHITECTURES
    ARCHITECTURES["tiny_cnn"].build(32, None, seed=7).save(sys.argv[1])
""")


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory) -> dict:
    """fp32, fp32-ft (brought by the QAT recipes), qat-int8 and qat-w4 of tiny_cnn and of a
    user's .keras file, built by a harness process of their own."""
    root = tmp_path_factory.mktemp("qat")
    train = write_folder(root / "train")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    subprocess.run([sys.executable, "-c", SAVE_KERAS, str(root / "mine.keras")], env=env,
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", HARNESS, str(root / "cache"), str(train),
                           str(root / "mine.keras")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "log": done.stdout, "root": root,
            "train": train}


def test_every_variant_is_built_and_qat_brings_its_baseline(qat_run):
    variants = qat_run["variants"]
    for model in ("tiny_cnn", "mine"):
        for recipe in ("fp32", *QAT):
            variant = variants[f"{model}|{recipe}"]
            assert variant["status"] == "ok", (model, recipe, variant["error"])
    assert variants["tiny_cnn|qat-w4"]["random_weights"]
    assert "measures latency and size, nothing of accuracy" in qat_run["log"]


def test_the_harness_never_imports_tfmot_or_tf_keras(qat_run):
    assert qat_run["modules"] == []  # nor TensorFlow or Keras: every one in a worker
    assert qat_run["legacy_keras"] is None
    qat = qat_run["variants"]["tiny_cnn|qat-int8"]["check"]["qat"]
    assert qat["legacy_keras"] == "1"  # ... while the QAT worker ran legacy Keras
    assert set(qat["software"]) == {"tf_keras", "tensorflow_model_optimization"}


def test_the_tf_keras_rebuild_computes_the_keras_3_logits(qat_run):
    for model, how in (("tiny_cnn", "random weights, carried over"),
                       ("mine", "graph rebuilt in tf_keras")):
        qat = qat_run["variants"][f"{model}|qat-w4"]["check"]["qat"]
        rebuild = qat["rebuild"]
        assert rebuild["ok"] and rebuild["inputs"] == 4
        assert 0.0 <= rebuild["max_abs_logit_diff"] <= 1e-4
        assert how in qat["weights_from"]
    assert "max |logit difference| from the Keras 3 model" in qat_run["log"]


def test_qat_w4_holds_4_bit_weights_and_qat_int8_8_bit(qat_run):
    variants = qat_run["variants"]
    for model in ("tiny_cnn", "mine"):
        w4 = variants[f"{model}|qat-w4"]
        levels = check_levels(Path(qat_run["root"]) / "cache" / _directory(w4) / "model.tflite")
        assert len(levels.tensors) == 4  # conv, depthwise, conv, dense: all checked
        assert levels.ok and max(t.levels for t in levels.tensors) <= 16
        assert w4["check"]["weight_levels"]["packed_4bit_bytes"] == levels.packed_bytes
        assert levels.packed_bytes <= w4["size_bytes"]
        int8 = variants[f"{model}|qat-int8"]
        levels8 = check_levels(Path(qat_run["root"]) / "cache" / _directory(int8) /
                               "model.tflite")
        assert levels8.most_levels > 16 and not levels8.ok
        assert w4["size_bytes"] < int8["size_bytes"] < variants[f"{model}|fp32"]["size_bytes"]
    assert "packed 4-bit size" in qat_run["log"]


def _directory(variant: dict) -> str:
    return key_hash(variant["key"])


def test_qat_files_have_int8_io_and_fp32_ft_stays_float(qat_run):
    variants = qat_run["variants"]
    cache = Path(qat_run["root"]) / "cache"
    for recipe, dtype in (("qat-int8", "int8"), ("qat-w4", "int8"), ("fp32-ft", "float32")):
        info = inspect_tflite(cache / _directory(variants[f"tiny_cnn|{recipe}"]) /
                              "model.tflite")
        assert info.inputs[0][1] == dtype and info.outputs[0][1] == dtype, recipe
    # fine-tuned alike: one step over 9 images in a batch, every recipe, checked vs fp32-ft
    for recipe in QAT:
        qat = variants[f"tiny_cnn|{recipe}"]["check"]["qat"]
        assert (qat["steps"], qat["images"], qat["epochs"]) == (1, 9, 1)
    check = variants["tiny_cnn|qat-int8"]["check"]
    assert check["vs_fp32_ft"]["snr_db"] > 15  # the ranges start at the float activations
    assert check["qat"]["ranges_set"] == check["qat"]["ranges"] > 0


def test_a_second_build_converts_nothing(qat_run):
    options = BuildOptions(calibration_size=8, train_data=training_choice(str(qat_run["train"])))
    builder = VariantBuilder(VariantCache(Path(qat_run["root"]) / "cache"), options)
    built = builder.build([parse_model("tiny_cnn")], ["qat-w4"])
    assert builder.converted == 0
    assert {r for _, r in built} == {"fp32", "fp32-ft", "qat-w4"}
    assert all(v.cached for v in built.values())


# ------------------------------------------------------------------ keys, no TensorFlow


def test_qat_keys_name_the_data_epochs_steps_and_version(tmp_path):
    spec = parse_model("tiny_cnn")
    first = write_folder(tmp_path / "a")
    options = BuildOptions(train_data=training_choice(str(first)))
    key = variant_key(spec, "qat-w4", options)
    assert key["qat"]["version"] == QAT_VERSION and key["qat"]["weight_bits"] == 4
    assert key["qat"]["training"] == {"data": options.train_data, "epochs": 1, "steps": None}
    assert options.train_data.startswith(f"folder:{first.resolve()}|")
    others = [BuildOptions(train_data=options.train_data, qat_epochs=2),
              BuildOptions(train_data=options.train_data, qat_steps=5),
              BuildOptions(train_data=training_choice(str(write_folder(tmp_path / "b"))))]
    hashes = {key_hash(variant_key(spec, "qat-w4", o)) for o in [options, *others]}
    assert len(hashes) == 4
    (first / "37" / "0.png").write_bytes(b"\x89PNG changed")  # same folder, other content
    changed = BuildOptions(train_data=training_choice(str(first)))
    assert variant_key(spec, "qat-w4", changed) != key
    assert variant_key(spec, "qat-int8", options) != variant_key(spec, "fp32-ft", options)


# tiny_cnn's keys as the code before this feature computed them (TensorFlow 2.21.0): users'
# cached variants stay valid.
KEY_BEFORE = {
    "fp32": ("46c35ce707293929d625ca28",
             {"converter": {"tensorflow": "2.21.0"},
              "model": {"alpha": None, "arch": "tiny_cnn", "builder_version": 1, "seed": 0,
                        "size": 32, "weights": "random"},
              "recipe": "fp32", "recipes_version": 1}),
    "int8": ("4fe09b39b0cd49404d1a5de1",
             {"calibration": {"data": "uniform[-1,1]", "seed": 1806, "size": 32},
              "converter": {"tensorflow": "2.21.0"}, "float_io": False,
              "model": {"alpha": None, "arch": "tiny_cnn", "builder_version": 1, "seed": 0,
                        "size": 32, "weights": "random"},
              "recipe": "int8", "recipes_version": 1}),
}


@pytest.mark.parametrize("recipe", sorted(KEY_BEFORE))
def test_existing_recipes_keep_their_cache_keys(recipe, tmp_path):
    digest, before = KEY_BEFORE[recipe]
    expected = {**before, "converter": {"tensorflow": converter_version()}}
    train = training_choice(str(write_folder(tmp_path / "train")))
    for options in (BuildOptions(), BuildOptions(train_data=train, qat_epochs=3, qat_steps=7)):
        key = variant_key(parse_model("tiny_cnn"), recipe, options)
        assert key == expected
        if converter_version() == "2.21.0":
            assert key_hash(key) == digest


# ------------------------------------------------------------------ usage errors


def test_recipe_lists():
    assert DEFAULT_RECIPES == ("fp32", "fp16", "dynamic", "int8", "int8-per-tensor", "int16x8")
    assert TRAINING_RECIPES == QAT and ALL_RECIPES == DEFAULT_RECIPES + QAT
    assert parse_recipes("fp32,qat-w4") == ["fp32", "fp32-ft", "qat-w4"]
    assert parse_recipes("qat-int8,int8") == ["fp32-ft", "qat-int8", "int8"]


def test_a_qat_recipe_needs_training_data(tmp_path):
    builder = VariantBuilder(VariantCache(tmp_path / "cache"), BuildOptions())
    with pytest.raises(UsageError, match=r"qat-int8 needs labelled training data: "
                       r"--train-data FOLDER \(CLASS/IMAGE.jpg\); none exists here for "
                       r"ImageNet, see `bench experiment fashion-mnist`"):
        builder.build([parse_model("tiny_cnn")], ["fp32", "qat-int8"])
    assert not (tmp_path / "cache").exists()  # nothing built
    with pytest.raises(UsageError, match="fp32-ft needs labelled training data"):
        check_training(["fp32-ft"], BuildOptions())
    with pytest.raises(UsageError, match="--train-data is for the quantization-aware"):
        check_training(["fp32", "int8"], BuildOptions(train_data="folder:/x|0"))
    check_training(["fp32", "int8"], BuildOptions())


def test_a_training_folder_must_exist_and_be_labelled(tmp_path):
    with pytest.raises(UsageError, match=r"--train-data: dataset folder .*missing does not "
                       "exist"):
        training_choice(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(UsageError, match="no class subfolders"):
        training_choice(str(tmp_path / "flat"))
    with pytest.raises(UsageError, match="evaluates or calibrates on"):
        training_choice("foolbox-imagenet")


def test_bench_run_refuses_qat_without_data_before_building(workdir):
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32,qat-int8"], workdir)
    assert done.returncode == 2
    assert "qat-int8 needs labelled training data: --train-data FOLDER" in done.stderr
    missing = run_bench(["run", "--models", "tiny_cnn", "--recipes", "qat-w4", "--train-data",
                         str(workdir / "nowhere")], workdir)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (workdir / "models").exists() and not (workdir / "results").exists()


def test_training_data_may_not_share_images_with_an_evaluation_set(tmp_path):
    from bench.data.datasets import foolbox_imagenet

    train = write_folder(tmp_path / "train")
    options = BuildOptions(train_data=training_choice(str(train)))
    settings = {"accuracy": ["foolbox-imagenet"], "agreement_inputs": 0}
    check_training_disjoint(settings, options)  # random PNGs: nothing shared
    source = foolbox_imagenet()._sources[3]
    (train / "0" / "copy.jpg").write_bytes(source.read())  # a foolbox image, renamed
    options = BuildOptions(train_data=training_choice(str(train)))
    with pytest.raises(UsageError, match=r"--train-data .*training set .* and evaluation set "
                       r"foolbox-imagenet share 1 image"):
        check_training_disjoint(settings, options)
    # the held-out agreement set --accuracy brings is made of the same photographs
    own = tmp_path / "eval"
    write_folder(own, seed=1)
    with pytest.raises(UsageError, match="evaluation set heldout share"):
        check_training_disjoint({"accuracy": [str(own)], "agreement_inputs": None}, options)
    check_training_disjoint({"accuracy": [str(own)], "agreement_inputs": 0}, options)
