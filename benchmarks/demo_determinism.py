"""Is `make demo` reproducible? The demo's data generation and a short run of its training under different thread
counts, DataLoader workers and CPU instruction sets, compared bit for bit.

Data: `facezoo.data.synthetic.synthesize` written with 1 and with 2 processes (sha256 of every file). Training: the
demo recipe (configs/synthetic_demo.yaml) for --steps optimiser steps in a fresh process per setting, with the
environment the setting names (OMP_NUM_THREADS: torch's intra-op threads; ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_CBWR: the vector instructions ATen, oneDNN and MKL use, standing in for another CPU), then the loss of every
logged step (metrics.jsonl, full float precision) and the sha256 of the backbone weights (model.pt) are compared
with the first setting's. Prints Markdown rows; each run's result is kept, so a rerun adds only new settings.

    python benchmarks/demo_determinism.py --out /tmp/det                          # the default settings
    python benchmarks/demo_determinism.py --out /tmp/det --steps 4 --identities 20 --images 4   # a dry run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "synthetic_demo.yaml"
# name -> (environment, extra overrides); the first is the reference
SETTINGS = {
    "threads 2, workers 0": ({"OMP_NUM_THREADS": "2"}, ["data.num_workers=0"]),
    "threads 2, workers 0 (again)": ({"OMP_NUM_THREADS": "2"}, ["data.num_workers=0"]),
    "threads 2, workers 2": ({"OMP_NUM_THREADS": "2"}, ["data.num_workers=2"]),
    "threads 1, workers 0": ({"OMP_NUM_THREADS": "1"}, ["data.num_workers=0"]),
    "threads 2, AVX2 kernels": (
        {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        ["data.num_workers=0"],
    ),
    "threads 1, AVX2 kernels": (
        {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        ["data.num_workers=0"],
    ),
    # what `make demo` sets (Makefile DEMO_ENV): 2 threads and AVX2 code paths in ATen, oneDNN and MKL
    "make demo's pinning": (
        {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
        ["data.num_workers=0"],
    ),
    # the same on a CPU without AVX-512, as far as one can be emulated: every library limited to AVX2
    "make demo's pinning, AVX2-only CPU (emulated)": (
        {
            "OMP_NUM_THREADS": "2",
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_CBWR": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        },
        ["data.num_workers=0"],
    ),
}


NO_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2's dispatch targets above AVX2
# label, folder, processes, environment: numpy's AVX-512 kernels off stands in for a CPU without them
DATA_SETTINGS = (
    ("1 process", "data_w1", 1, {}),
    ("2 processes", "data_w2", 2, {}),
    (
        "2 processes, numpy without AVX-512",
        "data_w2_avx2",
        2,
        {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    ),
)


def digest_tree(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def weights_digest(model_pt: Path) -> str:
    import torch

    weights = torch.load(model_pt, map_location="cpu", weights_only=True)["backbone"]
    h = hashlib.sha256()
    for k in sorted(weights):
        v = weights[k]
        if hasattr(v, "numpy"):
            h.update(k.encode() + v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(data: Path, run: Path, env: dict, extra: list, steps: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "facezoo",
        "train",
        str(RECIPE),
        f"output={run}",
        f"data.train={data}/train",
        "data.val=[]",
        "log_every=1",
        "tensorboard=false",
        *extra,
        "--max-steps",
        str(steps),
    ]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
    subprocess.run(cmd, check=True, env=full_env, stdout=subprocess.DEVNULL)
    losses = [json.loads(line).get("train/loss") for line in (run / "metrics.jsonl").read_text().splitlines()]
    ckpt = run / "model.pt" if (run / "model.pt").exists() else run / "checkpoint.pt"
    return {"losses": [v for v in losses if v is not None], "weights": weights_digest(ckpt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="work folder")
    ap.add_argument("--identities", type=int, default=60, help="training identities")
    ap.add_argument("--images", type=int, default=12, help="images per identity")
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps per training run")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), help="which settings to run")
    args = ap.parse_args()
    out = args.out
    digests = {}
    for label, folder, workers, env in DATA_SETTINGS:
        if not (out / folder / "synth.json").exists():
            code = (
                "import sys; from facezoo.data.synthetic import synthesize; "
                f"synthesize(sys.argv[1], {args.identities}, {args.images}, seed=0, image_size=64, val_pairs=200, "
                f"workers={workers})"
            )
            full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
            subprocess.run([sys.executable, "-c", code, str(out / folder)], check=True, env=full_env)
        digests[label] = digest_tree(out / folder)
    first = next(iter(digests.values()))
    print("| data | sha256 of every file | same as the first |")
    print("|---|---|---|")
    for label, d in digests.items():
        print(f"| synthesize, {label} | {d[:16]} | {'yes' if d == first else 'NO'} |")
    print()
    data = out / DATA_SETTINGS[0][1]
    results = {}
    for name in args.settings:
        env, extra = SETTINGS[name]
        run = out / "runs" / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        result_file = run / "determinism.json"
        if result_file.exists():
            results[name] = json.loads(result_file.read_text())
            continue
        if run.exists():
            import shutil

            shutil.rmtree(run)
        results[name] = train(data, run, env, extra, args.steps)
        result_file.write_text(json.dumps(results[name]))
    ref_name = args.settings[0]
    ref = results[ref_name]
    letters: dict[str, str] = {}  # weights digest -> A, B, ...: one letter per distinct result
    print(
        f"| training setting ({args.steps} steps) | loss at step 1 | loss at the last step | first step whose loss "
        f"differs from '{ref_name}' | weights (same letter: bit-identical) |"
    )
    print("|---|---|---|---|---|")
    for name, r in results.items():
        diff = next((i + 1 for i, (a, b) in enumerate(zip(r["losses"], ref["losses"])) if a != b), None)
        letter = letters.setdefault(r["weights"], "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(letters)])
        print(f"| {name} | {r['losses'][0]!r} | {r['losses'][-1]!r} | {diff or 'none'} | {letter} |")


if __name__ == "__main__":
    main()
