# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.facezoo-installed
# CPU wheel; on a machine that already has torch (e.g. a CUDA build) the existing one is kept.
TORCH  ?= torch==2.13.0
# `make demo QUICK=1`: 100 identities x 16 images, 2 epochs (under 2 minutes on 2 cores) instead of 400 x 24, 4,
# into its own folder.
ifeq ($(QUICK),1)
DEMO ?= demo_quick
DEMO_IDS ?= 100
DEMO_IMGS ?= 16
DEMO_EPOCHS ?= 2
else
DEMO_IDS ?= 400
DEMO_IMGS ?= 24
DEMO_EPOCHS ?= 4
endif
DEMO   ?= demo_out
# The demo's figures depend on how float sums are split and vectorised: pin torch's intra-op threads and the AVX2
# code paths of ATen, oneDNN and MKL, so any x86-64 machine with AVX2 and this torch runs the same arithmetic
# (README "Quick start": what is and is not reproducible; benchmarks/demo_determinism.py checks it).
DEMO_THREADS ?= 2
DEMO_ENV := OMP_NUM_THREADS=$(DEMO_THREADS) MKL_NUM_THREADS=$(DEMO_THREADS) ATEN_CPU_CAPABILITY=avx2 \
	ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2

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
	$(BIN)/facezoo data synth $(DEMO)/data --identities $(DEMO_IDS) --images-per-identity $(DEMO_IMGS) \
		--image-size 64 --seed 0
	$(DEMO_ENV) $(BIN)/facezoo train configs/synthetic_demo.yaml output=$(DEMO)/run data.train=$(DEMO)/data/train \
		"data.val=[$(DEMO)/data/synth_ver.bin,$(DEMO)/data/synth_hard.bin]" epochs=$(DEMO_EPOCHS)
	$(DEMO_ENV) $(BIN)/facezoo eval $(DEMO)/run/model.pt --bin $(DEMO)/data/synth_ver.bin $(DEMO)/data/synth_hard.bin \
		--out $(DEMO)/eval

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
	rm -rf $(VENV) $(DEMO) demo_quick build src/*.egg-info
