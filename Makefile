# Two commands on a fresh machine: `make run` (install + serve on the embedded default) and
# `make test` (install + lint + the whole test suite). Each creates its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_KEYS := var/keys
PORT ?= 8000
RESEMBLYZER := resemblyzer==0.1.4
# A second environment, for the test that loads a release with datasets 4 (its own pins).
DATASETS_VENV ?= .venv-datasets
DATASETS_STAMP := $(DATASETS_VENV)/.installed

.PHONY: install run test lint pytest system-deps bench clean lock

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
# torch first, pinned, so that the voice extra does not pull another build of it.
	$(BIN)/pip install --quiet torch==2.13.0
	PIP_CONSTRAINT=requirements.lock $(BIN)/pip install --quiet -e '.[dev,voice]'
# resemblyzer without its dependencies: they are in the voice extra, and its old webrtcvad
# requirement would replace the webrtcvad module of webrtcvad-wheels.
	$(BIN)/pip install --quiet --no-deps $(RESEMBLYZER)
	$(BIN)/python -W error -c 'import webrtcvad'
	$(BIN)/python -c 'import resemblyzer, pocketsphinx, pyworld'
	touch $(STAMP)

install: $(STAMP)

$(DATASETS_STAMP): requirements-datasets.txt | system-deps
	$(PYTHON) -m venv $(DATASETS_VENV)
	$(DATASETS_VENV)/bin/pip install --quiet --upgrade pip
	$(DATASETS_VENV)/bin/pip install --quiet torch==2.13.0
	$(DATASETS_VENV)/bin/pip install --quiet -r requirements-datasets.txt
	$(DATASETS_VENV)/bin/python -c 'import datasets, torchcodec.decoders'
	touch $(DATASETS_STAMP)

# Debian packages the tests need: headless Chromium and nginx for the review console, FFmpeg's
# libraries for datasets 4's audio decoding; skipped when already present.
SYSTEM_PACKAGES := chromium nginx ffmpeg
system-deps:
	@{ command -v chromium && test -x /usr/sbin/nginx && command -v ffmpeg; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; fi; }

$(DEV_KEYS)/public.pem: $(STAMP)
	$(BIN)/chorus consent keygen

run: install $(DEV_KEYS)/public.pem
	CHORUS_CONSENT_PUBLIC_KEY=$(DEV_KEYS)/public.pem CHORUS_PORT=$(PORT) $(BIN)/chorus serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: install system-deps $(DATASETS_STAMP)
	$(BIN)/pytest -p no:cacheprovider

test: lint pytest

bench: install
	$(BIN)/python benchmarks/scorer.py --quick
	$(BIN)/python benchmarks/ingest.py --seconds 3 --rounds 1
	$(BIN)/python benchmarks/voice_privacy.py --quick
	$(BIN)/python benchmarks/release.py --quick

# Re-pin every dependency (runtime and dev) after a change to pyproject.toml; keeps the pins it
# can. The lock names no package index: pip uses whichever the machine is configured with.
lock: install
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
	  --no-emit-trusted-host --no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) $(DATASETS_VENV) var .pytest_cache .mypy_cache .ruff_cache
