"""Masked-face verification on the synthetic identities: accuracy of models trained with and without masks.

Data: `facezoo data synth` (identities x images of training identities, held-out verification pairs in
synth_ver.bin), then `facezoo data mask` makes
  - synth_ver_masked.bin: the second image of every pair masked (3-D method; the pairs are aligned crops, so the
    landmarks are the template's and the mask sits as on a frontal face), and the same for synth_hard.bin (frontal
    against 35-55 degree yaw: the yawed image is the masked one),
  - train_masked: every training image masked (FaceX-Zoo's "model2" data),
  - train_mixed:  each training image masked with probability 0.5 (FaceX-Zoo's "model3", normal + masked).
Models, one recipe (IR-18 at quarter width, ArcFace), trained on:
  plain      the unmasked set
  augment    the unmasked set with on-device mask augmentation (data.augment: mask, p 0.5, 3-D)
  model2     train_masked
  model3     train_mixed
  crop_eye   the unmasked set, FaceX-Zoo's upper-face mode (model.crop_eye)
Each is evaluated on the clean and masked pair sets (10-fold accuracy, flip-summed embeddings) and printed as a
Markdown row. Accuracy figures do not depend on machine load.

    python benchmarks/masked_synth.py                              # 200 identities x 12 images, 64 px, 8 epochs
    python benchmarks/masked_synth.py --identities 40 --images 6 --epochs 1 --pairs 200   # a dry run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "plain": {"train": "train", "overrides": []},
    "augment": {"train": "train", "overrides": ["data.augment=[{name: mask, p: 0.5, method: 3d}]"]},
    "model2 (masked data)": {"train": "train_masked", "overrides": []},
    "model3 (mixed data)": {"train": "train_mixed", "overrides": []},
    "crop_eye": {"train": "train", "overrides": ["model.crop_eye=true"]},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--images", type=int, default=12, help="images per training identity")
    ap.add_argument("--val-identities", type=int, default=60)
    ap.add_argument("--pairs", type=int, default=1200, help="verification pairs (a multiple of 20)")
    ap.add_argument("--size", type=int, default=64, help="image side, px")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="processes for rendering and masking")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from facezoo.augment.sets import MaskSetOptions, mask_set
    from facezoo.cli import main as cli
    from facezoo.config import load_config
    from facezoo.data.synthetic import synthesize
    from facezoo.data.verification_bin import load_bin_images
    from facezoo.eval.verification import evaluate_pairs
    from facezoo.train.trainer import Trainer

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="masked_synth."))
    data = work / "data"
    t0 = time.perf_counter()
    if not (data / "synth_ver.bin").is_file():
        synthesize(data, args.identities, args.images, seed=0, val_identities=args.val_identities,
                   image_size=args.size, val_pairs=args.pairs, workers=args.workers)  # fmt: skip
    sets = {}
    for name in ("synth_ver", "synth_hard"):
        sets[name] = data / f"{name}.bin"
        out = data / f"{name}_masked.bin"
        if not out.is_file():  # the command a user runs
            cli(["data", "mask", str(data / f"{name}.bin"), str(out), "--seed", "1", "--workers", str(args.workers)])
        sets[f"{name} masked"] = out
    for name, p in (("train_masked", 1.0), ("train_mixed", 0.5)):
        if not (data / name).is_dir():
            mask_set(data / "train", data / name, MaskSetOptions(p=p, seed=2, workers=args.workers))
    print(f"data ready in {time.perf_counter() - t0:.0f} s under {work}", file=sys.stderr)

    base = [
        "model.backbone=ir18",
        "model.kwargs={width: 0.25}",
        "model.embedding_size=128",
        f"model.input_size={args.size}",
        "head.name=arcface",
        "head.kwargs={s: 32.0, m: 0.3}",
        "optim.lr=0.1",
        "optim.no_decay_bn_bias=true",
        "schedule.warmup_epochs=0.5",
        f"epochs={args.epochs}",
        f"batch_size={args.batch_size}",
        "tensorboard=false",
        "log_every=100",
    ]
    loaded = {name: load_bin_images(path, (args.size, args.size)) for name, path in sets.items()}
    names = list(sets)
    print(f"| model | trained on | {' | '.join(names)} |")
    print("|---|---|" + "---|" * len(names))
    for model in args.models:
        spec = MODELS[model]
        cfg = load_config(None, [*base, f"data.train={data / spec['train']}", f"output={work / 'runs' / model}",
                                 *spec["overrides"]])  # fmt: skip
        t = time.perf_counter()
        trainer = Trainer(cfg, verbose=False)
        trainer.fit()
        embedder = trainer.embedder().eval()
        cells = []
        for name in names:
            images, issame = loaded[name]
            r = evaluate_pairs(embedder, images, issame, batch_size=256)
            cells.append(f"{100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f}")
        extra = " + " + " ".join(spec["overrides"]) if spec["overrides"] else ""
        print(f"| {model} | {spec['train']}{extra} | {' | '.join(cells)} |", flush=True)
        print(f"  [{model}: {time.perf_counter() - t:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
