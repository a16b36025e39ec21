from pathlib import Path

import pytest

from bench.devices import load_device, load_devices
from bench.errors import UsageError

REPO_DEVICES = Path(__file__).resolve().parent.parent / "devices"


def write(tmp_path: Path, text: str, name: str = "dev") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_example_board_loads():
    device = load_device(REPO_DEVICES / "rpi4.toml")
    assert device.transport == "ssh" and device.ssh.host == "rpi4.local"
    assert device.python.endswith("python") and device.thermal_max_c == 60


def test_shipped_example_phone_loads():
    device = load_device(REPO_DEVICES / "pixel.toml")
    assert device.transport == "adb" and device.runner == "benchmark_model"
    assert device.adb.client == "adb-shell" and device.adb.port == 5555
    assert device.work_dir.startswith("/data/local/tmp/")
    assert "hexagon" in device.backends and device.benchmark_model.hexagon_lib_dir


def test_shipped_local_device_loads():
    device = load_device(REPO_DEVICES / "local.toml")
    assert device.name == "local" and device.transport == "local" and device.runner == "python"
    assert "xnnpack" in device.backends and device.threads == (1,)


def test_defaults(tmp_path):
    device = load_device(write(tmp_path, 'transport = "local"\nrunner = "python"\n'))
    assert device.name == "dev"
    assert device.backends == ("xnnpack",) and device.threads == (1,)
    assert device.tflite_module == "auto" and device.cpus is None and device.timeout_s == 600


@pytest.mark.parametrize("text, fragment", [
    ('transport = "local"\nrunner = "python"\ncolour = "red"\n', "key 'colour': unknown key"),
    ('runner = "python"\n', "key 'transport': missing"),
    ('transport = "local"\n', "key 'runner': missing"),
    ('transport = "local"\nrunner = "python"\nthreads = 2\n', "key 'threads': expected"),
    ('transport = "local"\nrunner = "python"\nthreads = ["1"]\n', "key 'threads': expected a list"),
    ('transport = "local"\nrunner = "python"\nthreads = [true]\n', "key 'threads'"),
    ('transport = "local"\nrunner = "python"\nthreads = [0]\n', "each >= 1"),
    ('transport = "local"\nrunner = "python"\nbackends = ["tpu"]\n', "'tpu' is not one of"),
    ('transport = "carrier-pigeon"\nrunner = "python"\n', "key 'transport'"),
    ('transport = "adb"\nrunner = "python"\n', "key 'adb': missing"),
    ('transport = "adb"\nrunner = "benchmark_model"\n[adb]\nhost = "p"\n',
     "key 'benchmark_model': missing"),
    ('transport = "adb"\nrunner = "python"\n[adb]\nclient = "adb"\n', "key 'adb.serial'"),
    ('transport = "adb"\nrunner = "python"\n[adb]\nclient = "fastboot"\n', "key 'adb.client'"),
    ('transport = "local"\nrunner = "benchmark_model"\n[benchmark_model]\nbinary = "b"\n'
     'extra_flags = ["num_runs=3"]\n', "not a --flag=value"),
    ('transport = "local"\nrunner = "benchmark_model"\n[benchmark_model]\nbinary = "b"\n'
     'cpu_mask = "big"\n', "not a hex CPU mask"),
    ('transport = "local"\nrunner = "python"\ntimeout_s = "soon"\n', "key 'timeout_s'"),
    ('transport = "local"\nrunner = "python"\ntflite_module = "x"\n', "key 'tflite_module'"),
    ('transport = "local\n', "not valid TOML"),
    ('transport = "local"\nrunner = "python"\nwork_dir = "."\n', "key 'work_dir'"),
    ('transport = "local"\nrunner = "python"\nwork_dir = "/"\n', "key 'work_dir'"),
    ('transport = "local"\nrunner = "python"\nwork_dir = "~"\n', "key 'work_dir'"),
    ('transport = "local"\nrunner = "python"\nwork_dir = "/tmp"\n', "shared system directory"),
    ('transport = "local"\nrunner = "python"\nwork_dir = "a/../.."\n', "key 'work_dir'"),
    ('transport = "local"\nrunner = "python"\nwork_dir = ""\n', "is empty"),
])
def test_invalid_files_name_the_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as error:
        load_device(path)
    assert str(path) in str(error.value)
    assert fragment in str(error.value)


def test_unknown_device_lists_known_ones(tmp_path):
    write(tmp_path, 'transport = "local"\nrunner = "python"\n', name="board")
    with pytest.raises(UsageError, match="unknown device 'pixel'.*devices here: board"):
        load_devices(["pixel"], tmp_path)
