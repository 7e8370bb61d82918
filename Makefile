# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.facezoo-installed
# CPU wheel; on a machine that already has torch (e.g. a CUDA build) the existing one is kept.
TORCH  ?= torch==2.13.0
DEMO   ?= demo_out

.PHONY: setup test lint format demo demo-real clean

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
	$(BIN)/facezoo models fetch dlib   # dlib's models from the face-recognition-models sdist, converted (once)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q  # 2 workers x 1 thread: no oversubscription on 2 cores

demo: $(STAMP)
	$(BIN)/facezoo data synth $(DEMO)/data --identities 400 --images-per-identity 24 --image-size 64 --seed 0
	$(BIN)/facezoo train configs/synthetic_demo.yaml output=$(DEMO)/run data.train=$(DEMO)/data/train \
		"data.val=[$(DEMO)/data/synth_ver.bin,$(DEMO)/data/synth_hard.bin]"
	$(BIN)/facezoo eval $(DEMO)/run/model.pt --bin $(DEMO)/data/synth_ver.bin $(DEMO)/data/synth_hard.bin --out $(DEMO)/eval

# Real photos (scikit-image's, insightface's wheel's) through dlib_resnet with MTCNN and dlib_mmod: seconds.
demo-real: $(STAMP)
	$(BIN)/facezoo models fetch mtcnn
	$(BIN)/facezoo models fetch dlib
	$(BIN)/python examples/real_photos.py $(DEMO)/real
	$(BIN)/facezoo verify $(DEMO)/real/astronaut.png $(DEMO)/real/astronaut_2.png --model dlib_resnet
	$(BIN)/facezoo verify $(DEMO)/real/hanks.png $(DEMO)/real/camera.png --model dlib_resnet --detector dlib_mmod
	$(BIN)/facezoo gallery enroll $(DEMO)/real/people.db $(DEMO)/real/gallery --model dlib_resnet --replace
	$(BIN)/facezoo identify $(DEMO)/real/astronaut_2.png $(DEMO)/real/hanks_2.png --model dlib_resnet \
		--gallery $(DEMO)/real/people.db --top-k 1

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
