# Phi on-device lab. Two commands matter: `make course` and `make test`.
# Every target is a thin wrapper: the README shows the `python …` command behind each one.
# tools/install.py finds a Python the course supports (3.11, 3.12, 3.13) by itself; PYTHON=... picks one.
PYTHON ?=
# Any python3 runs the stdlib-only tools; they check the Python the venv is built with.
BOOT := $(or $(PYTHON),$(shell for p in python3 python python3.13 python3.12 python3.11; do command -v $$p && break; done))
PYTHON_ARG := $(if $(PYTHON),--python $(PYTHON))
# Without it, say how to get one (make alone prints "No such file or directory", Error 127).
define need_python
	@command -v $(or $(BOOT),python3) >/dev/null || { echo "make $@: $(or $(PYTHON),python3) was not found. The course needs Python 3.11, 3.12 or 3.13: install one with 'uv python install 3.12' (or python.org), then run 'make $@' again. Nothing was installed."; exit 2; }
endef
# The peer engines' venvs (make bench-peers) are pinned for Python 3.11.
PEERS_PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
GPU_VENV := .venv-gpu
GPU_PY   := $(GPU_VENV)/bin/python
# make test-gpu MODELS=real: also run the notebooks on the real Phi-3.5 models (from the runner's HF cache).
MODELS ?= tiny

export HF_HUB_OFFLINE ?= 1
export OLIVE_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install course demo test test-laptop test-gpu hub lab lab-solutions bench bench-peers bench-peers-reference bench-scale bench-scale-reference bench-scale-quick bench-recipes bench-training bench-training-quick cpu-sheet laptop-sheet laptop-training prefetch lock exercises translations wheelhouse clean

# Re-installs only when a lock or the packaging changed (tools/install.py keeps a stamp).
install:
	$(need_python)
	@$(BOOT) tools/install.py --flavour cpu --venv $(VENV) $(PYTHON_ARG)

# COURSE_LANG=es|pt|zh|ko: the labs in that language (generated from the English ones and translations/).
# Not LANG: that is the locale.
COURSE_LANG ?=
LANG_ARG := $(if $(COURSE_LANG),--lang $(COURSE_LANG))

course: install
	$(PY) -m labkit course $(LANG_ARG)

# The whole course in about a minute on a warm cache (run `make course` once first): for live demos.
demo: install
	$(PY) -m labkit course --demo $(LANG_ARG)

# The suite's models are tiny or 1- and 2-layer shadows: glibc keeps freed memory for reuse (labkit/core/allocator.py;
# tests/conftest.py does the same for the processes the tests start).
test: install
	MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) -m pytest

# The laptop profile's quick course on 1-layer shadows (tests/test_laptop_course.py); CI runs it after `make test`.
test-laptop: install
	MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 $(PY) -m pytest -m laptop

# The GPU flavour lives in its own environment: .venv stays as it is. Without an NVIDIA GPU this
# stops before downloading anything, with one message and exit code 3.
test-gpu:
	$(need_python)
	@$(BOOT) tools/install.py --flavour gpu --venv $(GPU_VENV) $(PYTHON_ARG)
	@$(GPU_PY) -m labkit gpu-probe
	LABKIT_PROFILE=gpu LABKIT_TEST_MODELS=$(MODELS) $(GPU_PY) -m pytest

lab: install
	$(PY) -m labkit exercises --keep $(LANG_ARG)
	@echo "Starting JupyterLab on exercises/$(COURSE_LANG) (the labs, solutions out): open the http://127.0.0.1:8888/lab?token=... URL it prints below."
	@echo "The notebooks run on the \"Python (labkit)\" kernel (they select it; pick it if asked). With the solutions: make lab-solutions."
	$(VENV)/bin/jupyter lab exercises/$(COURSE_LANG) $(if $(filter 0,$(shell id -u)),--allow-root)

lab-solutions: install
	$(if $(COURSE_LANG),$(PY) -m labkit translations --write --lang $(COURSE_LANG) >/dev/null)
	@echo "Starting JupyterLab on notebooks/$(COURSE_LANG) (the labs with their solutions, for instructors)."
	$(VENV)/bin/jupyter lab notebooks/$(COURSE_LANG) $(if $(filter 0,$(shell id -u)),--allow-root)

bench: install
	$(PY) -m labkit bench

# The course's builds against llama.cpp (GGUF Q4_0/Q4_K_M/Q8_0/F32) and OpenVINO GenAI (int4/int8/fp32) on the
# bench checkpoint -> runs/bench-peers.json. Each engine gets its own venv in .venv-peers/ (the first time
# 15-20 min: llama-cpp-python compiles); later runs about a minute on 2 cores.
bench-peers: install
	@$(PY) tools/install_peers.py --python $(PEERS_PYTHON)
	$(PY) -m labkit bench-peers

# The same, written to docs/measured/bench-peers.json (committed): the comparison labs 01 and 05 show until an
# attendee runs `make bench-peers`.
bench-peers-reference: install
	@$(PY) tools/install_peers.py --python $(PEERS_PYTHON)
	$(PY) -m labkit bench-peers --out docs/measured/bench-peers.json

# Phi-3.5-mini at its real size on this CPU (random-weight shadow): INT4/INT8/FP32 build time, peak RAM,
# size, load, prefill/decode, bandwidth fraction; Phi-4-mini's INT4 beside it (KV cache per token, decode after
# 256/2K/4K tokens of context for both); the Phi-3.5-vision shadow's export and image prompts
# -> runs/bench-scale.json. About 80 min on a 2-core AVX2-only CPU (Phi-3.5-mini's builds and Phi-4-mini's took 48
# of them), and up to 65 GB of disk on an empty model cache: it checks before the first build (`scale.check_disk`).
bench-scale: install
	$(PY) -m labkit bench-scale --vision --phi4

# The same, written to docs/measured/bench-scale.json (committed, without this machine's folder names): the
# reference measurements labs 01 and 05 show until an attendee runs `make bench-scale`. Inside a 16 GB memory
# cgroup (needs root: tools/memory_limit.py), so the reference also shows that every step fits a 16 GB laptop.
bench-scale-reference: install
	$(PY) tools/memory_limit.py 16G -- $(PY) -m labkit bench-scale --vision --phi4 --out docs/measured/bench-scale.json

# The same path on 1- and 2-layer shadows, extrapolated to 32 layers: about a minute. Medians of 5 runs: the
# per-layer cost is the difference of two short timings, times 31, so one run's noise would be multiplied.
bench-scale-quick: install
	$(PY) -m labkit bench-scale --layers 2 --precisions int4 --runs 5

# The laptop course, all six labs, on full-size Phi-3.5 shadows (random weights, real architecture) inside a 16 GB
# memory cgroup (needs root: tools/memory_limit.py), writing the per-lab minutes and peak memory that lab 00's plan
# shows for the laptop profile (docs/measured/laptop-course.json), as a first run: on an empty model cache with the
# shadows linked in (they stand for `make prefetch`'s downloads). About an hour on 2 cores; ~35 GB of disk.
laptop-sheet: install
	$(PY) tools/memory_limit.py 16G -- env LABKIT_SHADOWS=1 $(PY) -m labkit course --profile laptop --cold-cache --sheet docs/measured/laptop-course.json

# The cpu course as an attendee's first run (an empty model cache, removed afterwards): the per-lab minutes, peak
# memory and disk that lab 00's plan shows for the cpu profile (docs/measured/cpu-course.json). About 15 minutes.
cpu-sheet: install
	$(PY) -m labkit course --cold-cache --sheet docs/measured/cpu-course.json

# Lab 03 with full_size_training=True (AWQ, LoRA and the export of Phi-3.5-mini itself, its full_size_recipe) and
# lab 04 on the model it made, on full-size shadows inside the same 16 GB cgroup: the per-step minutes and peak memory
# lab 00's and lab 03's plans show (docs/measured/laptop-training.json). About an hour on 2 cores.
laptop-training: install
	$(PY) tools/memory_limit.py 16G -- env LABKIT_SHADOWS=1 $(PY) -m labkit course --profile laptop --only 03 04 --full-size-training --sheet docs/measured/laptop-training.json

# Lab 03's full-size recipe (full_size_recipe) on the tiny course model, one change at a time from lab 03's default,
# each judged on the 448 paraphrased travel questions -> docs/measured/recipes.json (lab 03 and docs/real-size.md
# show it). About 25 minutes on 2 cores; steps another run made are cached.
bench-recipes: install
	$(PY) -m labkit bench-recipes --out docs/measured/recipes.json

# Lab 03's full-size AWQ and LoRA on this CPU, before an attendee commits to them: the unit costs on 1- and 2-layer
# Phi-3.5-mini shadows (AWQ per layer, a LoRA step's parts), extrapolated to 32 layers -> runs/bench-training.json,
# which lab 00's plan and lab 03 read. About 8 minutes on a 2-core CPU without bfloat16 instructions; the quick
# variant (the least work that runs every piece, a test runs it) about 2.
bench-training: install
	$(PY) -m labkit bench-training

bench-training-quick: install
	$(PY) -m labkit bench-training --quick --out runs/bench-training-quick.json

# The workshop server on this machine: JupyterHub on port 8000 for a room (root: each attendee gets a Unix user and a
# memory cgroup of their own). Run `make course` first: its model cache is what attendees read. Prints the URL and the
# room's password (LABKIT_HUB_PASSWORD=... sets it); Ctrl+C stops the hub and every attendee's server. SEATS=N: fewer
# attendees than the machine's RAM holds.
hub: install
	$(PY) -m labkit hub --profile $(or $(LABKIT_PROFILE),cpu) $(if $(SEATS),--seats $(SEATS)) $(LANG_ARG)

# Download what a profile needs before the workshop (PROFILE=laptop|gpu) and print the sizes.
PROFILE ?= laptop
prefetch: install
	HF_HUB_OFFLINE=$(PREFETCH_OFFLINE) $(PY) -m labkit prefetch --profile $(PROFILE) $(if $(MODEL),--model $(MODEL))
PREFETCH_OFFLINE ?= 0

# Attendee copies of the labs with the exercise solutions removed, in exercises/.
exercises: install
	$(PY) -m labkit exercises $(LANG_ARG)

# Stale and missing translations of the labs, each checked against its English; the labs generated into
# notebooks/<lang>/. See translations/README.md.
translations: install
	$(PY) -m labkit translations --check --write $(if $(COURSE_LANG),--lang $(COURSE_LANG))

# Every locked wheel for PLATFORM=linux|macos|windows in wheelhouse/<platform>/, for an offline venue.
PLATFORM ?= linux
wheelhouse:
	$(need_python)
	$(BOOT) tools/wheelhouse.py --platform $(PLATFORM) $(if $(WHEELHOUSE_PYTHON),--python-version $(WHEELHOUSE_PYTHON))

# Recompile every lock from requirements/requirements.in (needs the package index).
lock: install
	$(PY) tools/lock.py

clean:
	rm -rf runs models $(VENV) $(GPU_VENV)
