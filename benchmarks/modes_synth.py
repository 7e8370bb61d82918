"""Held-out verification accuracy of the training modes on synthetic faces (accuracy, not speed: any CPU will do).

Three comparisons, each printed as Markdown rows (synth_ver = held-out identities, synth_hard = frontal vs 35-55
deg yaw, occluded, look-alike impostors):
  shallow   two images per identity: semi_siamese against conventional ArcFace, same backbone, epochs and batch
            (Du et al.'s claim: SST wins on shallow data);
  distill   a small student trained alone against the same student distilled from a larger teacher;
  finetune  a new small set (other identities): fine-tuned from a model trained on the first set against trained
            from scratch (and the first model as it is).

    python benchmarks/modes_synth.py --out /tmp/modes_synth              # a few CPU minutes per run
    python benchmarks/modes_synth.py --out /tmp/modes_synth --quick      # seconds: checks the script runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from facezoo.config import load_config
from facezoo.data.synthetic import synthesize
from facezoo.train.callbacks.verification import Verifier
from facezoo.train.trainer import Trainer


def scale(args) -> dict:
    """Set sizes, run lengths and batch: --quick's tiny ones or the command line's."""
    if args.quick:
        return {
            "size": 32,
            "shallow": 60,
            "deep": 24,
            "deep_images": 6,
            "new": 16,
            "new_images": 4,
            "pairs": 100,
            "epochs": 2,
            "batch": 16,
        }
    return {
        "size": args.image_size,
        "shallow": args.identities,
        "deep": 300,
        "deep_images": 10,
        "new": 100,
        "new_images": 6,
        "pairs": 1000,
        "epochs": args.epochs,
        "batch": 64,
    }


def common(s: dict, out: Path, width: float, dim: int = 128) -> list[str]:
    return [
        f"output={out}",
        "model.backbone=ir18",
        f"model.input_size={s['size']}",
        f"model.embedding_size={dim}",
        f"model.kwargs={{width: {width}}}",
        "head.name=arcface",
        "head.kwargs={s: 32.0, m: 0.3}",
        "optim.lr=0.1",
        "optim.no_decay_bn_bias=true",
        "schedule.warmup_epochs=1",
        f"batch_size={s['batch']}",
        f"epochs={s['epochs']}",
        "log_every=1000",
        "tensorboard=false",
        "data.num_workers=0",
    ]


def train(overrides: list[str]) -> Trainer:
    t = Trainer(load_config(None, overrides), verbose=False)
    t.fit()
    return t


def verify(t: Trainer, folder: Path) -> dict:
    verifier = Verifier([str(folder / "synth_ver.bin"), str(folder / "synth_hard.bin")], t.meta.input_size)
    return {name: r["accuracy"] for name, r in verifier(t.embedder(), t.device).items()}


def row(experiment: str, run: str, acc: dict) -> str:
    return f"| {experiment} | {run} | {acc['synth_ver'] * 100:.2f} | {acc['synth_hard'] * 100:.2f} |"


def shallow(s, work: Path) -> list[str]:
    data = work / "shallow"
    synthesize(data, identities=s["shallow"], images_per_identity=2, image_size=s["size"], val_pairs=s["pairs"])
    base = [*common(s, work / "runs", 0.25), f"data.train={data / 'train'}"]
    rows = []
    queue = max(4 * s["batch"], min(4096, s["shallow"]))
    for name, extra in (
        ("conventional ArcFace", ["output=" + str(work / "runs" / "conv")]),
        (
            "semi_siamese (AM s 30 m 0.35)",
            ["output=" + str(work / "runs" / "sst"), "mode=semi_siamese", f"semi_siamese.queue_size={queue}"],
        ),
    ):
        t = train([*base, *extra])
        rows.append(row(f"shallow ({s['shallow']} ids x 2)", name, verify(t, data)))
    return rows


def distill(s, work: Path) -> tuple[list[str], Path]:
    data = work / "deep"
    synthesize(
        data, identities=s["deep"], images_per_identity=s["deep_images"], image_size=s["size"], val_pairs=s["pairs"]
    )
    train_set = f"data.train={data / 'train'}"
    teacher = train([*common(s, work / "runs" / "teacher", 0.5), train_set])
    label = f"distill ({s['deep']} ids x {s['deep_images']})"
    rows = [row(label, "teacher ir18 x0.5", verify(teacher, data))]
    student = common(s, work / "runs" / "student", 0.125)
    alone = train([*student, train_set])
    rows.append(row(label, "student ir18 x0.125 alone", verify(alone, data)))
    losses = "[{name: cosine, weight: 1.0}, {name: kd, weight: 1.0, kwargs: {T: 4.0, s: 32.0}}]"
    kd = [*student, train_set, "output=" + str(work / "runs" / "distilled"), "mode=distill"]
    kd += [
        f"distill.teacher={work / 'runs' / 'teacher' / 'checkpoint.pt'}",
        f"distill.losses={losses}",
        "distill.cache=true",
    ]
    distilled = train(kd)
    rows.append(row(label, "student distilled (cosine + kd)", verify(distilled, data)))
    return rows, work / "runs" / "teacher" / "model.pt"


def finetune(s, work: Path, pretrained: Path) -> list[str]:
    data = work / "new"
    synthesize(
        data,
        identities=s["new"],
        images_per_identity=s["new_images"],
        image_size=s["size"],
        seed=1,
        val_pairs=s["pairs"],
    )
    base = [*common(s, work / "runs" / "scratch", 0.5), f"data.train={data / 'train'}"]
    label = f"finetune ({s['new']} new ids x {s['new_images']})"
    rows = []
    as_is = Trainer(load_config(None, [*base, f"model.init_from={pretrained}"]), verbose=False)  # no step taken
    rows.append(row(label, "first model as it is", verify(as_is, data)))
    scratch = train(base)
    rows.append(row(label, "from scratch", verify(scratch, data)))
    tuned = [*base, "output=" + str(work / "runs" / "tuned"), f"model.init_from={pretrained}"]
    tuned += ["optim.lr=0.02", "optim.lr_mult={backbone: 0.5}"]
    t = train(tuned)
    rows.append(row(label, "fine-tuned (lr 0.02, backbone x0.5)", verify(t, data)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="work folder (synthetic sets and runs)")
    p.add_argument("--identities", type=int, default=1000, help="shallow set identities (default 1000)")
    p.add_argument("--image-size", type=int, default=48, help="image side (default 48)")
    p.add_argument("--epochs", type=int, default=12, help="epochs of every run (default 12)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    p.add_argument("--only", choices=["shallow", "distill", "finetune"], action="append", help="some experiments")
    args = p.parse_args()
    torch.manual_seed(0)
    s, only = scale(args), set(args.only or ["shallow", "distill", "finetune"])
    print("| experiment | run | synth_ver % | synth_hard % |\n|---|---|---|---|", flush=True)
    if "shallow" in only:
        print("\n".join(shallow(s, args.out)), flush=True)
    if only & {"distill", "finetune"}:
        rows, teacher = distill(s, args.out)
        if "distill" in only:
            print("\n".join(rows), flush=True)
        if "finetune" in only:
            print("\n".join(finetune(s, args.out, teacher)), flush=True)


if __name__ == "__main__":
    main()
