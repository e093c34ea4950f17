# Two commands: `make quickstart` and `make test`. Both create the environment if needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Extras the test suite exercises. tensorrt stays optional (no GPU here); xgboost comes as
# xgboost-cpu, the CPU build of the same package (the `xgboost` wheel pulls NVIDIA's NCCL).
EXTRAS ?= dev,onnx,gpu,hf,ray,plot

.PHONY: quickstart test lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# With no torch present, install the CPU build first: a bare `torch` requirement
# would otherwise pull a multi-GB CUDA build. 2.13.0+cpu lies on this machine's disk.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" xgboost-cpu
	# litgpt (the LitGPT export of the gpt family is tested against it) pins huggingface-hub<1.4,
	# which transformers 5 cannot use; its code runs with the newer hub, so it goes in without its pins.
	$(PY) -m pip install --quiet --no-deps "litgpt>=0.5,<0.6"
	$(PY) -m pip install --quiet lightning "jsonargparse[signatures]>=4.37,<=4.41" tqdm tokenizers psutil
	@touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	@bash scripts/quickstart.sh $(VENV)

lint: $(STAMP)
	$(VENV)/bin/ruff check latbench tests benchmarks

test: $(STAMP)
	$(VENV)/bin/ruff check latbench tests benchmarks
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
