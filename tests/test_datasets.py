"""Calibration and evaluation inputs: torchvision's preprocessing, the sources, and that
calibration and evaluation never share an image.

The wheel sources are read from small fake wheels built here (BENCH_ASSETS_DIR points at
them) and, when `make assets` has run, from the real ones too.
"""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data import datasets as ds
from bench.data import images
from bench.errors import BenchError, UsageError
from tests.conftest import IN_CI, REPO

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
REAL_ASSETS = REPO / "models" / "assets"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _expected(value: float) -> np.ndarray:
    """Hand formula: ToTensor then Normalize, per channel."""
    return (value / 255.0 - MEAN) / STD


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth random colour picture (so crops differ and JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------- preprocessing


def test_bilinear_resize_crop_and_normalise_match_a_hand_computed_example():
    # Rows 0, 70, 140, 210 halved by PIL's antialiased bilinear filter: the taps are
    # (3, 3, 1)/7 and (1, 3, 3)/7, so 50 and 160 exactly.
    row = np.array([0, 70, 140, 210], dtype=np.uint8)
    image = Image.fromarray(np.tile(row, (4, 1))).convert("RGB")
    out = images.preprocess(image, crop=2, resize=2)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    for y in range(2):
        np.testing.assert_allclose(out[y, 0], _expected(50), atol=1e-6)
        np.testing.assert_allclose(out[y, 1], _expected(160), atol=1e-6)


def test_center_crop_takes_the_middle_with_torchvisions_rounding():
    # int(round(x)) rounds halves to even: 1.5 -> 2, 2.5 -> 2, 0.5 -> 0.
    assert images.center_crop_origin(5, 5, 2) == (2, 2)
    assert images.center_crop_origin(7, 7, 2) == (2, 2)
    assert images.center_crop_origin(3, 3, 2) == (0, 0)
    assert images.center_crop_origin(8, 6, 2) == (3, 2)
    pixels = np.arange(7 * 5, dtype=np.uint8).reshape(5, 7)  # 7 wide, 5 high
    crop = images.center_crop(Image.fromarray(pixels), 2)
    np.testing.assert_array_equal(np.asarray(crop), pixels[2:4, 2:4])
    with pytest.raises(ValueError, match="larger"):
        images.center_crop_origin(3, 3, 4)


def test_resize_sizes_follow_torchvision():
    assert images.resize_for(224) == 256
    assert images.resize_for(299) == 342
    assert images.resize_for(128) == 146
    assert images.resized_size(451, 300, 256) == (384, 256)  # 384.85 truncated
    assert images.resized_size(300, 451, 256) == (256, 384)
    assert images.resized_size(500, 500, 256) == (256, 256)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_images_normalise_per_channel(value):
    image = Image.new("RGB", (451, 300), (value, value, value))
    out = images.preprocess(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(_expected(value), out.shape), atol=1e-5)


def test_grey_and_encoded_images_become_rgb_inputs():
    grey = Image.fromarray(np.full((40, 60), 128, dtype=np.uint8))
    out = images.preprocess(_encoded(grey, "PNG"), crop=16)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[0, 0], _expected(128), atol=1e-5)
    np.testing.assert_array_equal(images.preprocess(grey, crop=16), out)


def test_variants_are_deterministic_per_seed_and_differ_across_seeds():
    image = _photo(300, 200, seed=1)
    first = images.variants(image, 12, seed=7, crop=32)
    assert first.shape == (12, 32, 32, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, images.variants(image, 12, seed=7, crop=32))
    assert not np.array_equal(first, images.variants(image, 12, seed=8, crop=32))
    assert len({view.flip for view in images.plan_views(300, 200, 12, 7)}) == 2
    # Different views of one image, not one view repeated.
    assert len({arr.tobytes() for arr in first}) == 12


def test_views_stay_inside_the_image_and_flip_mirrors():
    for view in images.plan_views(300, 200, 200, seed=3):
        assert view.left >= 0 and view.left + view.width <= 300
        assert view.top >= 0 and view.top + view.height <= 200
        area = view.width * view.height / (300 * 200)
        assert 0.2 < area <= 1.0  # scale (0.25, 1) up to rounding
    image = _photo(300, 200, seed=2)
    view = images.View(10, 20, 120, 100, flip=False)
    mirrored = images.View(10, 20, 120, 100, flip=True)
    plain = images.render_view(image, view, 24)
    np.testing.assert_allclose(images.render_view(image, mirrored, 24), plain[:, ::-1])


def test_random_resized_crop_falls_back_to_a_central_crop():
    rng = np.random.default_rng(0)
    # No crop of 2-3x the image's area fits: a central crop of the widest allowed ratio.
    box = images.random_resized_crop_box(400, 100, rng, scale=(2.0, 3.0))
    assert box == ((400 - 133) // 2, 0, 133, 100)


# ---------------------------------------------------------------- fake wheels


FOOLBOX_FAKE = {"imagenet_00_243.jpg": (64, 48), "imagenet_01_7.jpg": (50, 50)}
FOOLBOX_FAKE_LATE = "imagenet_10_999.jpg"


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)


@pytest.fixture
def fake_assets(tmp_path, monkeypatch) -> Path:
    """A foolbox and a scikit-image wheel holding small pictures, as `make assets` would."""
    folder = tmp_path / "assets"
    folder.mkdir()
    foolbox = {
        f"foolbox/data/{name}": _encoded(_photo(*size, seed=k), "JPEG")
        for k, (name, size) in enumerate(FOOLBOX_FAKE.items())
    }
    foolbox[f"foolbox/data/{FOOLBOX_FAKE_LATE}"] = _encoded(_photo(40, 60, seed=9), "JPEG")
    foolbox["foolbox/data/cifar10_00_3.png"] = _encoded(_photo(32, 32, seed=3), "PNG")
    foolbox["foolbox/data/imagenet_notes.txt"] = b"not an image"
    _wheel(folder / "foolbox-3.3.4-py3-none-any.whl", foolbox)
    skimage = {
        f"skimage/data/{name}": _encoded(_photo(60 + 7 * k, 40 + 3 * k, seed=20 + k), "PNG")
        for k, name in enumerate(ds.SKIMAGE_NATURAL)
    }
    skimage["skimage/data/camera.png"] = _encoded(_photo(30, 30, seed=40).convert("L"), "PNG")
    _wheel(folder / "scikit_image-0.24.0-cp311-cp311-manylinux2014_x86_64.whl", skimage)
    monkeypatch.setenv("BENCH_ASSETS_DIR", str(folder))
    return folder


def test_foolbox_imagenet_reads_labels_from_file_names(fake_assets):
    data = ds.dataset("foolbox-imagenet", input_shape=(1, 32, 32, 3))
    assert (data.name, data.kind, data.num_classes, len(data)) == (
        "foolbox-imagenet",
        "labelled",
        1000,
        3,
    )
    assert "not ImageNet accuracy" in data.description
    inputs, labels = data.take()
    assert inputs.shape == (3, 32, 32, 3) and inputs.dtype == np.float32
    assert labels.tolist() == [243, 7, 999]  # by the NN index, cifar and notes ignored
    assert data.source_of(2) == f"foolbox:foolbox/data/{FOOLBOX_FAKE_LATE}"
    batches = list(data.batches(2))
    assert [len(x) for x, _ in batches] == [2, 1]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), inputs)


def test_skimage_natural_spreads_deterministic_views_over_the_photographs(fake_assets):
    data = ds.dataset("skimage-natural", input_shape=(24, 24, 3), size=15, seed=4)
    assert (data.kind, len(data), data.num_classes) == ("unlabelled", 15, None)
    inputs, labels = data.take()
    assert labels is None and inputs.shape == (15, 24, 24, 3)
    assert {ref.origin.rsplit("/", 1)[-1] for ref in data.sources()} == set(ds.SKIMAGE_NATURAL)
    # Round-robin: the first six samples are one view of each photograph.
    assert len({data.source_of(k) for k in range(6)}) == 6
    again = ds.skimage_natural(15, 24, seed=4).take()[0]
    np.testing.assert_array_equal(inputs, again)
    assert not np.array_equal(inputs, ds.skimage_natural(15, 24, seed=5).take()[0])
    # Sample 6 is the second view of photograph 0, i.e. variants(photo 0, 3, (seed, 0))[1].
    photo = ds.assets.wheel_member(ds.SKIMAGE, "skimage/data/" + ds.SKIMAGE_NATURAL[0])
    np.testing.assert_array_equal(inputs[6], images.variants(photo, 3, (4, 0), crop=24)[1])


def test_heldout_uses_no_calibration_image(fake_assets):
    held = ds.heldout(count=1000, input_size=16, seed=0)
    assert (held.kind, len(held)) == ("unlabelled", 1000)
    assert all(ref.origin.startswith("foolbox:") for ref in held.sources())
    inputs, labels = next(held.batches(64))
    assert inputs.shape == (64, 16, 16, 3) and labels is None
    calibration = ds.skimage_natural(100, 16)
    ds.assert_disjoint(calibration, held)
    ds.assert_disjoint(calibration, ds.foolbox_imagenet(16))
    with pytest.raises(UsageError, match="share 3 image"):
        ds.assert_disjoint(held, ds.foolbox_imagenet(16))


def test_disjointness_is_by_content_not_only_by_name(fake_assets, tmp_path):
    photo = ds.assets.wheel_member(ds.SKIMAGE, "skimage/data/chelsea.png")
    (tmp_path / "user" / "cat").mkdir(parents=True)
    (tmp_path / "user" / "cat" / "renamed.png").write_bytes(photo)
    folder = ds.dataset(str(tmp_path / "user"), input_shape=(16, 16, 3))
    with pytest.raises(UsageError, match=r"renamed\.png \(= scikit-image:skimage/data/chelsea"):
        ds.assert_disjoint(ds.skimage_natural(10, 16), folder)


def test_a_missing_wheel_says_to_run_make_assets(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ASSETS_DIR", str(tmp_path))
    for name in ("foolbox-imagenet", "skimage-natural", "heldout"):
        with pytest.raises(BenchError, match="make assets"):
            ds.dataset(name, input_shape=(224, 224, 3))


# ---------------------------------------------------------------- real wheels


@pytest.fixture
def real_assets(monkeypatch) -> Path:
    wanted = ("foolbox-*.whl", "scikit_image-*.whl")
    if not all(list(REAL_ASSETS.glob(pattern)) for pattern in wanted):
        _skip_or_fail(f"no foolbox / scikit-image wheels in {REAL_ASSETS}: run `make assets`")
    monkeypatch.setenv("BENCH_ASSETS_DIR", str(REAL_ASSETS))
    return REAL_ASSETS


def test_real_foolbox_images_are_20_labelled_imagenet_images(real_assets):
    data = ds.foolbox_imagenet()
    inputs, labels = data.take()
    assert inputs.shape == (20, 224, 224, 3) and inputs.dtype == np.float32
    assert labels.shape == (20,) and labels.min() >= 0 and labels.max() <= 999
    assert labels[:3].tolist() == [243, 559, 438]
    assert np.isfinite(inputs).all() and inputs.min() > -2.2 and inputs.max() < 2.7


def test_real_calibration_and_heldout_sets_are_disjoint(real_assets):
    calibration = ds.dataset("skimage-natural", input_shape=(224, 224, 3))
    held = ds.dataset("heldout", input_shape=(224, 224, 3))
    assert len(calibration) == 100 and len(held) >= 1000
    assert len(calibration.sources()) == len(ds.SKIMAGE_NATURAL) and len(held.sources()) == 20
    ds.assert_disjoint(calibration, held)
    ds.assert_disjoint(calibration, ds.foolbox_imagenet())
    inputs, _ = calibration.take(8)
    assert inputs.shape == (8, 224, 224, 3) and np.isfinite(inputs).all()


# ---------------------------------------------------------------- Fashion-MNIST


def _idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, count in (("train", 6), ("t10k", 4)):
        _idx(folder / f"{stem}-images-idx3-ubyte.gz", 0x803, rng.integers(0, 256, (count, 28, 28)))
        _idx(folder / f"{stem}-labels-idx1-ubyte.gz", 0x801, np.arange(count) % 10)
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(folder))
    return folder


def test_fashion_mnist_idx_files_become_unit_range_nhwc(fake_fashion):
    train = ds.dataset("fashion-mnist", input_shape=(28, 28, 1), split="train")
    test = ds.dataset("fashion-mnist", input_shape=(None, 28, 28, 1))
    assert (len(train), len(test), test.split, train.label) == (6, 4, "test", "fashion-mnist:train")
    inputs, labels = train.take()
    assert inputs.shape == (6, 28, 28, 1) and inputs.dtype == np.float32
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert train.class_names[0] == "T-shirt/top" and train.num_classes == 10
    ds.assert_disjoint(train, test)
    with pytest.raises(UsageError, match="share 6 image"):
        ds.assert_disjoint(train, train)


def test_fashion_mnist_errors(fake_fashion, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="splits train, test, not 'val'"):
        ds.dataset("fashion-mnist", input_shape=(28, 28, 1), split="val")
    with pytest.raises(UsageError, match="28x28x1; the model takes 224x224x3"):
        ds.dataset("fashion-mnist", input_shape=(224, 224, 3))
    _idx(fake_fashion / "t10k-labels-idx1-ubyte.gz", 0x803, np.zeros((4, 1, 1)))
    with pytest.raises(UsageError, match="not an IDX file"):
        ds.fashion_mnist("test")
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist"):
        ds.fashion_mnist("train")


def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    monkeypatch.delenv("BENCH_FASHION_MNIST_DIR", raising=False)
    if not all((ds.FASHION_MNIST_DIR / name).is_file() for name in FASHION_FILES):
        _skip_or_fail(
            f"no Fashion-MNIST in {ds.FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist"
        )
    train, test = ds.fashion_mnist("train"), ds.fashion_mnist("test")
    assert (len(train), len(test)) == (60_000, 10_000)
    for split in (train, test):
        inputs, labels = split.take(1000)
        assert inputs.shape == (1000, 28, 28, 1) and inputs.dtype == np.float32
        assert inputs.min() >= 0.0 and inputs.max() == 1.0
        assert set(labels.tolist()) == set(range(10))
    assert len(train.class_names) == 10


# ---------------------------------------------------------------- user folders


def _folder(root: Path, layout: dict[str, int]) -> Path:
    for k, (name, count) in enumerate(layout.items()):
        (root / name).mkdir(parents=True)
        for j in range(count):
            _photo(40, 30, seed=100 * k + j).save(root / name / f"img{j}.{'png' if j else 'jpg'}")
    return root


def test_user_folder_classes_are_sorted_folder_names(tmp_path):
    root = _folder(tmp_path / "data", {"zebra": 1, "ant": 2, "mole": 1})
    (root / "README.txt").write_text("ignored")
    (root / "ant" / "notes.txt").write_text("ignored")
    data = ds.dataset(str(root), input_shape=(1, 32, 32, 3))
    assert (data.kind, data.num_classes, data.class_names) == (
        "labelled",
        3,
        ("ant", "mole", "zebra"),
    )
    inputs, labels = data.take()
    assert inputs.shape == (4, 32, 32, 3) and labels.tolist() == [0, 0, 1, 2]
    first = images.preprocess((root / "ant" / "img0.jpg").read_bytes(), crop=32)
    np.testing.assert_array_equal(inputs[0], first)


def test_user_folder_with_integer_names_uses_them_as_class_indices(tmp_path):
    root = _folder(tmp_path / "val", {"243": 1, "7": 1, "999": 1})
    data = ds.image_folder(root, input_size=16)
    assert (data.num_classes, data.class_names) == (1000, None)
    assert data.take()[1].tolist() == [243, 7, 999]  # folders sorted as text


def test_folder_and_name_errors(tmp_path):
    shape = (224, 224, 3)
    with pytest.raises(
        UsageError,
        match=r"unknown dataset 'imagenett'; known: foolbox-imagenet, "
        r"skimage-natural, heldout, fashion-mnist, or a folder",
    ):
        ds.dataset("imagenett", input_shape=shape)
    with pytest.raises(UsageError, match="does not exist; expected FOLDER/CLASS_NAME/IMAGE"):
        ds.dataset(str(tmp_path / "missing"), input_shape=shape)
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        ds.dataset(str(tmp_path / "file.jpg"), input_shape=shape)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="is empty; expected"):
        ds.dataset(str(tmp_path / "empty"), input_shape=shape)
    (tmp_path / "flat").mkdir()
    _photo(20, 20, seed=0).save(tmp_path / "flat" / "a.png")
    with pytest.raises(UsageError, match=r"has no class subfolders \(1 files directly in it\)"):
        ds.dataset(str(tmp_path / "flat"), input_shape=shape)
    root = _folder(tmp_path / "holes", {"cat": 1, "dog": 0})
    with pytest.raises(UsageError, match="no .jpg/.jpeg/.png images in class folder"):
        ds.dataset(str(root), input_shape=shape)
    _folder(tmp_path / "twice", {"1": 1, "01": 1})
    with pytest.raises(UsageError, match="two class folders for one number"):
        ds.dataset(str(tmp_path / "twice"), input_shape=shape)


def test_resolver_argument_errors(tmp_path):
    root = _folder(tmp_path / "data", {"a": 1})
    with pytest.raises(UsageError, match="has no splits"):
        ds.dataset(str(root), input_shape=(224, 224, 3), split="train")
    with pytest.raises(
        UsageError, match="fixed size; a size applies to skimage-natural and heldout"
    ):
        ds.dataset("foolbox-imagenet", input_shape=(224, 224, 3), size=5)
    with pytest.raises(UsageError, match="square RGB inputs; the model takes 28x28x1"):
        ds.dataset(str(root), input_shape=(28, 28, 1))
    with pytest.raises(UsageError, match="is not \\(height, width, channels\\)"):
        ds.dataset(str(root), input_shape=(224, 224))
    with pytest.raises(UsageError, match="at least 1"):
        ds.dataset("heldout", input_shape=(224, 224, 3), size=0)


def test_copied_user_folder_shares_with_itself(tmp_path):
    root = _folder(tmp_path / "a", {"x": 2})
    shutil.copytree(root, tmp_path / "b")
    with pytest.raises(UsageError, match="share 2 image"):
        ds.assert_disjoint(ds.image_folder(root, 16), ds.image_folder(tmp_path / "b", 16))


def test_keras_mobilenet_preprocessing_scales_to_minus_one_one_and_stages_exactly():
    from bench.accuracy.staging import encode
    from bench.runners.pyrunner import decode_inputs

    image = Image.fromarray(np.array([[[0, 255, 51]] * 4] * 4, dtype=np.uint8))
    out = images.normalise(image, images.KERAS_MOBILENET)
    np.testing.assert_allclose(out[0, 0], [-1.0, 1.0, 51 / 127.5 - 1], rtol=0, atol=1e-6)
    torch_style = images.normalise(image)
    assert not np.allclose(out, torch_style)
    pixels, spec = encode(out[None])
    assert spec == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert np.array_equal(decode_inputs(np, pixels, spec), out[None])
    with pytest.raises(ValueError, match="unknown preprocessing"):
        images.normalise(image, "caffe")
