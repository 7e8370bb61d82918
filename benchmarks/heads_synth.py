"""Every margin head trained on the same synthetic set; held-out verification (synth_ver, synth_hard) in one table.

The recipe is configs/synthetic_demo.yaml (quarter-width IR-18 at 64x64, SGD, poly schedule) with only head.name
changed; each head uses its paper defaults (head.kwargs = {}) unless --kwargs gives some. The data is written once
by facezoo.data.synthetic (the `facezoo data synth` generator) into OUT/data; each head trains into
OUT/runs/<head> (train.log: its progress lines) and leaves OUT/runs/<head>/result.json, so an interrupted sweep
resumes with the heads not yet done. Accuracy is the 10-fold verification accuracy (mean +- std over folds) on
pairs of identities held out from training, checked once after training.

    python benchmarks/heads_synth.py --out bench_out/heads                       # every head, the demo's size
    python benchmarks/heads_synth.py --out /tmp/hs --heads arcface,uniface \\
        --identities 40 --images 6 --max-steps 3                                 # a dry run
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import yaml
from tqdm import tqdm

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "synthetic_demo.yaml"
SETS = ("synth_ver", "synth_hard")


def make_data(folder: Path, identities: int, images: int, size: int, seed: int) -> Path:
    """The synthetic set in folder (written once, atomically: a half-written one is never reused)."""
    from facezoo.data.synthetic import synthesize
    from facezoo.io import staged_dir

    if not (folder / "synth.json").exists():
        with staged_dir(folder) as tmp:
            synthesize(tmp, identities=identities, images_per_identity=images, seed=seed, image_size=size)
    return folder


def train_head(name: str, data: Path, run: Path, args) -> dict:
    """Train one head with the demo recipe; its verification results on both held-out sets."""
    from facezoo.config import load_config
    from facezoo.train.callbacks.verification import Verifier
    from facezoo.train.trainer import Trainer

    overrides = [
        f"output={run}",
        f"data.train={data / 'train'}",
        "data.val=[]",  # verified once below, after training
        f"head.name={name}",
        f"head.kwargs={json.dumps(args.kwargs.get(name, {}))}",
        f"seed={args.seed}",
        "tensorboard=false",
    ]
    if args.epochs:
        overrides.append(f"epochs={args.epochs}")
    cfg = load_config(RECIPE, overrides)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.log", "w") as log, contextlib.redirect_stdout(log):  # progress lines, not the table
        trainer = Trainer(cfg)
        history = trainer.fit(max_steps=args.max_steps)
        trainer.close()
    verifier = Verifier([str(data / f"{s}.bin") for s in SETS], trainer.meta.input_size)
    results = verifier(trainer.embedder(), trainer.device)
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    return {
        "head": name,
        "steps": trainer.step,
        "final_loss": losses[-1] if losses else float("nan"),
        **{s: {"accuracy": results[s]["accuracy"], "std": results[s]["accuracy_std"]} for s in SETS},
    }


def table(rows: list[dict]) -> str:
    lines = ["| head | synth_ver acc (%) | synth_hard acc (%) | final train loss | steps |", "|---|---|---|---|---|"]
    for r in rows:
        ver, hard = (f"{100 * r[s]['accuracy']:.2f} +- {100 * r[s]['std']:.2f}" for s in SETS)
        lines.append(f"| {r['head']} | {ver} | {hard} | {r['final_loss']:.3f} | {r['steps']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from facezoo.io import atomic_write
    from facezoo.models.heads import HEADS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the data, the runs and the results")
    p.add_argument("--heads", default="all", help="comma-separated registry names, or 'all' (default)")
    p.add_argument("--identities", type=int, default=400, help="training identities (the demo's 400)")
    p.add_argument("--images", type=int, default=24, help="images per identity (the demo's 24)")
    p.add_argument("--image-size", type=int, default=64, help="must match the recipe's model.input_size (64)")
    p.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (0: keep its 4)")
    p.add_argument("--max-steps", type=int, default=None, help="stop every head after this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kwargs", type=yaml.safe_load, default={}, help="per-head kwargs as YAML, e.g. '{arcface: {s: 32, m: 0.3}}'"
    )
    args = p.parse_args(argv)
    names = HEADS.names() if args.heads == "all" else [n.strip() for n in args.heads.split(",") if n.strip()]
    for name in names:
        HEADS.get(name)  # an unknown name fails before any training, with did-you-mean
    data = make_data(args.out / "data", args.identities, args.images, args.image_size, args.seed)
    rows = []
    for name in tqdm(names, desc="heads", disable=None):
        result_file = args.out / "runs" / name / "result.json"
        if result_file.exists():  # done in an earlier (interrupted) sweep
            rows.append(json.loads(result_file.read_text()))
            continue
        row = train_head(name, data, args.out / "runs" / name, args)
        with atomic_write(result_file, "w") as f:
            json.dump(row, f, indent=1)
        rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
