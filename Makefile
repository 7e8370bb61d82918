# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.facezoo-installed
# CPU wheel; on a machine that already has torch (e.g. a CUDA build) the existing one is kept.
TORCH  ?= torch==2.13.0
DEMO   ?= demo_out

.PHONY: setup test lint format demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check

format: $(STAMP)
	$(BIN)/ruff check --fix
	$(BIN)/ruff format

test: $(STAMP) lint
	$(BIN)/facezoo models fetch mtcnn  # MTCNN weights from the facenet-pytorch wheel (sha256-checked; once)
	$(BIN)/python -m pytest -n 2 -q

demo: $(STAMP)
	$(BIN)/facezoo data synth $(DEMO)/data --identities 400 --images-per-identity 24 --image-size 64 --seed 0
	$(BIN)/facezoo train configs/synthetic_demo.yaml output=$(DEMO)/run data.train=$(DEMO)/data/train \
		"data.val=[$(DEMO)/data/synth_ver.bin,$(DEMO)/data/synth_hard.bin]"
	$(BIN)/facezoo eval $(DEMO)/run/model.pt --bin $(DEMO)/data/synth_ver.bin $(DEMO)/data/synth_hard.bin --out $(DEMO)/eval

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
