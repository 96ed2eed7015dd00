# Two commands from a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo install test test-slow test-app lint format bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so that the project's range does not pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Discover K = 4 directions in the shipped MNIST model (200 steps, about 10 min on 2 cores; held-out RCA in docs/discovery.md), then draw them.
demo: $(STAMP)
	$(BIN)/hspace discover --preset mnist-demo --out runs/demo $$(test -f runs/demo/checkpoint.pt && echo --resume)
	$(BIN)/hspace show runs/demo --out runs/demo/show
	@echo
	@echo "Done. Open runs/demo/show/index.html (one grid per direction: rows are seeds, columns s from -S to S)."
	@echo "The shipped directions, trained longer: .venv/bin/hspace show default --out show-default"

install: $(STAMP)

test: $(STAMP) lint
	$(BIN)/pytest -q

# The formatter is run, not silenced: `make format` writes, `make lint` (part of `make test`) checks.
lint: $(STAMP)
	$(BIN)/ruff check hspace tests experiments
	$(BIN)/ruff format --check hspace tests experiments

format: $(STAMP)
	$(BIN)/ruff check --fix hspace tests experiments
	$(BIN)/ruff format hspace tests experiments

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# `hspace app` driven in headless Chromium (tests/test_app_browser.py; also part of test-slow where Gradio, selenium
# and Chromium are installed). Chromium and its driver come from the system: apt install chromium chromium-driver.
test-app: $(STAMP)
	$(BIN)/pip install -q -e '.[app]' selenium
	$(BIN)/pytest -q -m slow tests/test_app_browser.py

bench: $(STAMP)
	$(BIN)/hspace bench --preset tiny --M 2,5,10,20 --json bench/tiny.json

clean:
	rm -rf $(VENV) build *.egg-info
