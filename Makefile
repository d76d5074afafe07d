# Phi on-device lab. Two commands matter: `make course` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export OLIVE_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install course test test-gpu lab bench clean

install: $(STAMP)

# Re-install only when the pins or the packaging change.
$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name labkit --display-name "Python (labkit)" >/dev/null
	touch $(STAMP)

course: install
	$(PY) -m labkit course

test: install
	$(PY) -m pytest

# The CUDA builds replace the CPU ones (they install the same Python modules).
test-gpu: install
	$(PY) -m pip uninstall --quiet -y onnxruntime onnxruntime-genai
	$(PY) -m pip install --quiet -r requirements/gpu.txt
	LABKIT_PROFILE=gpu $(PY) -m pytest

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) -m labkit bench

clean:
	rm -rf runs models $(VENV)
