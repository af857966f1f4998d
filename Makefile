# Segue: `make demo` and `make test` set everything up on a fresh Debian machine (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Which ONNX Runtime to install: cpu or gpu (exactly one; the wheels overwrite each other).
RUNTIME ?= cpu
EXTRAS ?= $(RUNTIME),studio,train,test,bench
MUSIC ?=
# Human odd-one-out triplets (Segue Studio's JSON export, or MECOMP's triplet CSV): when set,
# `make train` fine-tunes the shipped model on them instead of training from scratch, and
# `make eval` also scores the held-out ones (training/finetune_human.py,
# bench/eval_human_triplets.py).
HUMAN_TRIPLETS ?=
# The folder the songs were indexed from (song id = path relative to it); default MUSIC, and
# without either the bundled tracks the demo plays.
HUMAN_MUSIC ?= $(MUSIC)
# Where the fine-tuned model goes (models/ is left alone; pass HUMAN_FLAGS=--replace-models
# to overwrite it too). HUMAN_FLAGS: more options of training/finetune_human.py.
HUMAN_OUT ?= out/human_finetune
HUMAN_FLAGS ?=
HUMAN_ARGS = --human "$(HUMAN_TRIPLETS)" $(if $(HUMAN_MUSIC),--music "$(HUMAN_MUSIC)",)
STAMP := $(VENV)/.installed-$(RUNTIME)

.PHONY: setup system proto proto-check lint test test-fast demo studio bench eval eval-structure \
        train train-beats data teacher-env teacher-cache clean help

help:
	@echo "make demo | studio | test | setup | proto | lint | bench | eval | eval-structure | train | train-beats | data | teacher-env"

system:
	bash scripts/setup_system.sh

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: system $(STAMP)

proto: $(STAMP)
	PY=$(PY) bash scripts/gen_proto.sh

proto-check: $(STAMP)
	PY=$(PY) bash scripts/gen_proto.sh --check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy segue services training bench scripts tests deploy devkit

test: setup proto-check lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -x -p no:cacheprovider -m "not slow"

demo: setup
	$(PY) scripts/demo.py $(if $(MUSIC),--music "$(MUSIC)",)

# Segue Studio over a matcher holding MUSIC (default: the bundled tracks); prints an invite link.
studio: setup
	$(PY) scripts/studio.py $(if $(MUSIC),--music "$(MUSIC)",)

data: setup
	$(PY) scripts/fetch_data.py
	$(PY) scripts/build_midi_set.py

train: setup $(if $(HUMAN_TRIPLETS),,data teacher-cache)
	$(if $(HUMAN_TRIPLETS),$(PY) -m training.finetune_human $(HUMAN_ARGS) --out "$(HUMAN_OUT)" \
	  $(HUMAN_FLAGS),$(PY) -m training.train)

# The structure engine's beat activation (segue/structure/beat_activation.npz) from the
# rendered-MIDI set's tuning split and generated songs: about 4 minutes once the set is built.
train-beats: setup
	$(PY) scripts/build_midi_set.py
	$(PY) -m training.train_beat_activation

# musicnn (training-time teacher and evaluation peer) in a venv of its own: it needs TensorFlow
# and numpy<2, which cannot share the project's venv (training/teacher.py).
TEACHER_VENV ?= .venv-teacher
TEACHER_STAMP := $(TEACHER_VENV)/.installed

teacher-env: $(TEACHER_STAMP)

$(TEACHER_STAMP): training/teacher-requirements.txt
	@[ -x $(TEACHER_VENV)/bin/python ] || $(PYTHON) -m venv $(TEACHER_VENV)
	$(TEACHER_VENV)/bin/pip install -q -r training/teacher-requirements.txt
	$(TEACHER_VENV)/bin/pip install -q --no-deps musicnn==0.1.0
	@touch $@

# musicnn's outputs along every training track, the distillation targets (timed; data/teacher/).
teacher-cache: setup data teacher-env
	$(PY) -m training.teacher_targets

eval: setup data teacher-env
	$(PY) bench/eval_embedding.py
	$(if $(HUMAN_TRIPLETS),$(PY) bench/eval_human_triplets.py $(HUMAN_ARGS) \
	  --finetuned "$(HUMAN_OUT)",)

eval-structure: setup
	$(PY) -m pip install -q -e ".[$(EXTRAS),peers]"
	$(PY) bench/eval_structure.py

bench: setup
	$(PY) bench/bench_model_speed.py
	$(PY) bench/bench_embedder.py
	$(PY) bench/bench_matcher.py
	$(PY) bench/bench_mixer.py
	$(PY) bench/bench_load.py
	$(PY) bench/bench_library.py

clean:
	rm -rf $(VENV) $(TEACHER_VENV) .mypy_cache .ruff_cache .pytest_cache out
