"""Face image quality on synthetic faces with degraded images: ERC area of baseline, MagFace norm and SDD-FIQA.

Stages (each resumable: a finished stage's output is reused, an interrupted one restarts or resumes):
  1. data     OUT/data/train (RecordIO) and OUT/data/test.bin: facezoo.data.synthetic identities, a fraction of
              the images degraded by facezoo.quality.degrade (blur, shrink, occlude; severity uniform in
              [0.3, 1]); the test pairs come from held-out identities (half genuine);
  2. magface  a small MagFace recognition model on the training set (configs/synthetic_demo.yaml, head magface);
  3. labels   SDD-FIQA pseudo-labels of the training set by that model (facezoo.quality.labels);
  4. sdd_fiqa the quality regressor on them (mode quality_regression, the same backbone, initialised from the
              MagFace model's weights);
  5. eval     facezoo eval-quality: the MagFace model scores the test pairs; baseline, magface_norm (its norm) and
              sdd_fiqa reject the lowest-quality pairs; FNMR at FMR 1e-2 / 1e-3 and the ERC area over r in [0, 0.5].
Prints the ERC table (Markdown) and writes OUT/eval (results.json, erc.png).

    python benchmarks/quality_synth.py --out bench_out/quality                    # the default size
    python benchmarks/quality_synth.py --out /tmp/qs --identities 30 --images 6 --pairs 400 \\
        --max-steps 4                                                              # a dry run
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "synthetic_demo.yaml"
KINDS = ("blur", "shrink", "occlude")


def _image(seed: int, identity: int, index: int, size: int, fraction: float) -> tuple[bytes, str]:
    """One rendered face, degraded with probability `fraction` (kind and severity drawn from its own seed)."""
    from facezoo.data.image import encode_image
    from facezoo.data.synthetic import identity_rng, image_rng, render, sample_identity, sample_nuisance
    from facezoo.quality.degrade import degrade

    im = render(sample_identity(identity_rng(seed, identity)), sample_nuisance(image_rng(seed, identity, index)), size)
    rng = np.random.default_rng([seed, identity, index, 0xDE6])
    kind = ""
    if rng.random() < fraction:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        im = degrade(im, kind, float(rng.uniform(0.3, 1.0)), seed=int(rng.integers(1 << 31)))
    return encode_image(im, "jpeg", quality=92), kind


def make_data(folder: Path, args) -> None:
    from facezoo.data.pack import pack_encoded
    from facezoo.data.verification_bin import write_bin
    from facezoo.io import staged_dir

    if (folder / "data.json").exists():
        return
    with staged_dir(folder) as tmp:
        items, kinds = [], []
        for i in range(args.identities):
            for j in range(args.images):
                data, kind = _image(args.seed, i, j, args.size, args.degrade)
                items.append((i, data))
                kinds.append(kind)
        pack_encoded(items, tmp / "train", image_size=(args.size, args.size))
        rng = np.random.default_rng([args.seed, 0x7E57])
        held = range(args.identities, args.identities + args.test_identities)
        images, same = [], []
        for k in range(args.pairs):
            a = int(rng.choice(held))
            b = a if k % 2 == 0 else int(rng.choice([h for h in held if h != a]))
            ja, jb = rng.choice(args.images, 2, replace=False) if a == b else rng.integers(args.images, size=2)
            images += [_image(args.seed, a, int(ja), args.size, args.degrade)[0]]
            images += [_image(args.seed, b, int(jb), args.size, args.degrade)[0]]
            same.append(a == b)
        write_bin(tmp / "test.bin", images, same)
        info = {"train_images": len(items), "degraded": {k: kinds.count(k) for k in KINDS}, "pairs": args.pairs}
        (tmp / "data.json").write_text(json.dumps({**vars(args), **info}, indent=1, default=str))


def train(run: Path, overrides: list[str], args) -> Path:
    """Train (or resume, or reuse) a run of the demo recipe with `overrides`; its model.pt."""
    from facezoo.config import load_config
    from facezoo.train.trainer import Trainer

    if (run / "done").exists():
        return run / "model.pt"
    cfg = load_config(RECIPE, [f"output={run}", "data.val=[]", f"seed={args.seed}", "tensorboard=false", *overrides])
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.log", "a") as log, contextlib.redirect_stdout(log):
        trainer = Trainer(cfg)
        if (run / "checkpoint.pt").exists():
            trainer.resume(run / "checkpoint.pt")
        trainer.fit(max_steps=args.max_steps)
        trainer.close()
    (run / "done").write_text("")
    return run / "model.pt"


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--identities", type=int, default=300, help="training identities (default 300)")
    p.add_argument("--images", type=int, default=12, help="images per identity (default 12)")
    p.add_argument("--test-identities", type=int, default=60, help="held-out identities of the test pairs")
    p.add_argument("--pairs", type=int, default=4000, help="test pairs, half genuine (default 4000)")
    p.add_argument("--degrade", type=float, default=0.4, help="fraction of degraded images (default 0.4)")
    p.add_argument("--size", type=int, default=64, help="image side (default 64, the demo recipe's)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of each training run (default 8)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each training run after this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    from facezoo.quality.evaluate import run_quality
    from facezoo.quality.labels import make_labels

    out = Path(args.out)
    make_data(out / "data", args)
    train_set = out / "data" / "train"
    common = [f"data.train={train_set}", f"model.input_size={args.size}", f"epochs={args.epochs}",
              f"device={args.device}"]  # fmt: skip
    magface = train(out / "magface", [*common, "head.name=magface", "head.kwargs={}"], args)
    labels = out / "labels.npy"
    if not labels.exists():
        make_labels(train_set, magface, labels, device=args.device, progress=False)
    regressor = train(
        out / "sdd_fiqa",
        [*common, "mode=quality_regression", "model.embedding_size=1", f"quality_regression.labels={labels}",
         f"quality_regression.init={magface}"],
        args,
    )  # fmt: skip
    report = run_quality(
        magface,
        ["baseline", "magface_norm", f"sdd_fiqa:{regressor}"],
        [str(out / "data" / "test.bin")],
        fmrs=(1e-2, 1e-3),
        device=args.device,
        cache_dir=out / "features",
        progress=False,
    )
    report.write(out / "eval")
    print(report.text)
    return report.text


if __name__ == "__main__":
    main()
