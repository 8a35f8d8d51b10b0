# Two commands on a fresh machine: `make run` (install the runtime + serve on the embedded
# default) and `make test` (install the rest + lint + the whole test suite), in one virtual
# environment, .venv. pip shows its progress: the test install takes minutes (README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
DEV_KEYS := var/keys
PORT ?= 8000
RESEMBLYZER := resemblyzer==0.1.4
# Two more environments, for the tests that load a release with datasets 4 and with datasets 3
# under pandas 3 (their own pins; the suite's own environment has datasets 3 under pandas 2).
DATASETS_VENV ?= .venv-datasets
DATASETS_STAMP := $(DATASETS_VENV)/.installed
DATASETS3_VENV ?= .venv-datasets3
DATASETS3_STAMP := $(DATASETS3_VENV)/.installed

.PHONY: install install-runtime run test lint pytest system-deps bench clean lock

# The service alone: what `chorus serve` imports, pinned by requirements-runtime.lock.
$(RUNTIME_STAMP): pyproject.toml requirements-runtime.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	PIP_CONSTRAINT=requirements-runtime.lock $(BIN)/pip install -e .
	$(BIN)/python -c 'import chorus.app'
	touch $(RUNTIME_STAMP)

install-runtime: $(RUNTIME_STAMP)

# Everything the tests, lint and benchmarks need on top, pinned by requirements.lock.
$(STAMP): $(RUNTIME_STAMP) pyproject.toml requirements.lock
# torch first, pinned, so that the voice extra does not pull another build of it.
	$(BIN)/pip install torch==2.13.0
	PIP_CONSTRAINT=requirements.lock $(BIN)/pip install -e '.[dev,voice]'
# resemblyzer without its dependencies: they are in the voice extra, and its old webrtcvad
# requirement would replace the webrtcvad module of webrtcvad-wheels.
	$(BIN)/pip install --no-deps $(RESEMBLYZER)
	$(BIN)/python -W error -c 'import webrtcvad'
	$(BIN)/python -c 'import resemblyzer, pocketsphinx, pyworld'
	touch $(STAMP)

install: $(STAMP)

$(DATASETS_STAMP): requirements-datasets.txt | system-deps
	$(PYTHON) -m venv $(DATASETS_VENV)
	$(DATASETS_VENV)/bin/pip install --upgrade pip
	$(DATASETS_VENV)/bin/pip install torch==2.13.0
	$(DATASETS_VENV)/bin/pip install -r requirements-datasets.txt
	$(DATASETS_VENV)/bin/python -c 'import datasets, torchcodec.decoders'
	touch $(DATASETS_STAMP)

$(DATASETS3_STAMP): requirements-datasets3.txt
	$(PYTHON) -m venv $(DATASETS3_VENV)
	$(DATASETS3_VENV)/bin/pip install --upgrade pip
	$(DATASETS3_VENV)/bin/pip install -r requirements-datasets3.txt
	$(DATASETS3_VENV)/bin/python -c 'import datasets, librosa, pandas'
	touch $(DATASETS3_STAMP)

# Debian packages the tests need: headless Chromium and nginx for the review console, FFmpeg's
# libraries for datasets 4's audio decoding; skipped when already present.
SYSTEM_PACKAGES := chromium nginx ffmpeg
system-deps:
	@{ command -v chromium && test -x /usr/sbin/nginx && command -v ffmpeg; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; fi; }

$(DEV_KEYS)/public.pem: $(RUNTIME_STAMP)
	$(BIN)/chorus consent keygen

run: install-runtime $(DEV_KEYS)/public.pem
	CHORUS_CONSENT_PUBLIC_KEY=$(DEV_KEYS)/public.pem CHORUS_PORT=$(PORT) $(BIN)/chorus serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: install system-deps $(DATASETS_STAMP) $(DATASETS3_STAMP)
	$(BIN)/pytest -p no:cacheprovider

test: lint pytest

bench: install
	$(BIN)/python benchmarks/scorer.py --quick
	$(BIN)/python benchmarks/ingest.py --seconds 3 --rounds 1
	$(BIN)/python benchmarks/voice_privacy.py --quick
	$(BIN)/python benchmarks/release.py --quick

# Re-pin every dependency (runtime and dev) after a change to pyproject.toml; keeps the pins it
# can. The runtime lock is the runtime's part of the whole lock, at the same pins. The locks
# name no package index: pip uses whichever the machine is configured with.
LOCK_OPTIONS := --quiet --strip-extras --no-emit-index-url --no-emit-trusted-host \
  --no-emit-find-links
lock: install
	$(BIN)/pip install pip-tools
	$(BIN)/pip-compile $(LOCK_OPTIONS) --extra dev --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_OPTIONS) --constraint requirements.lock \
	  --output-file requirements-runtime.lock pyproject.toml

clean:
	rm -rf $(VENV) $(DATASETS_VENV) $(DATASETS3_VENV) var .pytest_cache .mypy_cache .ruff_cache
