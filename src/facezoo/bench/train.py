"""Training throughput: the trainer's own step, timed after warm-up, with host syncs only at the ends.

data="synthetic": uint8 batches generated on the device (no decode, no transfer), as the anchors' figures are;
otherwise a RecordIO folder (or any dataset path) read through the training DataLoader.
"""

from __future__ import annotations

import time

import torch

from ..config import load_config
from ..train.distributed import world_from_env


class _ClassesOnly:
    """A dataset stand-in that only says how many images and classes there are (synthetic input)."""

    def __init__(self, size: int, num_classes: int):
        self.size, self.num_classes = size, num_classes

    def __len__(self) -> int:
        return self.size


def bench_train(
    backbone="ir50",
    batch_size=512,
    classes=93431,
    sample_rate=1.0,
    data="synthetic",
    steps=50,
    warmup=10,
    overrides=(),
    compile=None,
    chunk_size=None,
) -> dict:
    """Images/s over `steps` optimiser steps after `warmup`, and peak GPU memory (GiB, CUDA only).

    Precision: an override (precision=...) when given, else default_precision(the device): bf16 on CUDA with bf16
    support, fp32 elsewhere; the result says which ("precision", "precision_default").

    compile: None (the config's, default off), False, True or a torch.compile mode; chunk_size: None (the
    config's, default "auto"), "auto" or an int (0 = unchunked). Both become config overrides.
    """
    import tempfile

    from ..train.trainer import Trainer

    extra = [
        *(() if compile is None else [f"compile={'true' if compile is True else compile}"]),
        *(() if chunk_size is None else [f"head.chunk_size={chunk_size}"]),
    ]
    with tempfile.TemporaryDirectory(prefix="facezoo-bench-") as output:
        return _bench(
            Trainer, backbone, batch_size, classes, sample_rate, data, steps, warmup, [*overrides, *extra], output
        )


def default_precision(device: torch.device) -> str:
    """The precision a benchmark should train in on `device`: bf16 on CUDA GPUs that support it (Ampere and newer),
    else fp32 (CPU autocast to bf16 is slower than fp32 on CPUs without AMX, and fp16 needs a GradScaler)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _bench(Trainer, backbone, batch_size, classes, sample_rate, data, steps, warmup, overrides, output) -> dict:
    from ..device import resolve_device

    synthetic = data == "synthetic"
    device_cfg = load_config(None, [o for o in overrides if o.startswith("device=")])
    precision = default_precision(resolve_device(device_cfg.device))
    cfg = load_config(
        None,
        [
            "head.kwargs={s: 64.0, m: 0.5}",
            f"precision={precision}",
            "tensorboard=false",
            "save_every=1000000000",
            "log_every=1000000000",
            *overrides,
            f"model.backbone={backbone}",
            f"batch_size={batch_size}",
            f"head.sample_rate={sample_rate}",
            f"output={output}",
            *(() if synthetic else [f"data.train={data}"]),
        ],
    )
    world = world_from_env().world_size  # under torchrun: the global batch
    dataset = _ClassesOnly(batch_size * world * (steps + warmup), classes) if synthetic else None
    trainer = Trainer(cfg, dataset=dataset, verbose=False)
    device, size = trainer.device, trainer.meta.input_size
    micro = cfg.batch_size // cfg.grad_accum

    def synthetic_batches():
        g = torch.Generator(device=device).manual_seed(0)
        while True:
            images = torch.randint(0, 256, (micro, *size, 3), dtype=torch.uint8, device=device, generator=g)
            labels = torch.randint(0, trainer.mode.num_classes, (micro,), device=device, generator=g)
            yield {"images": images, "labels": labels, "skipped": 0}

    batches = synthetic_batches() if synthetic else iter(trainer.mode.batches(0, 0))
    generator = torch.Generator().manual_seed(0)

    def step():  # the trainer's own step (Partial FC sample, micro-batches, optimiser), no host sync
        trainer.train_step([next(batches) for _ in range(cfg.grad_accum)], generator)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    trainer.close()
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "classes": trainer.mode.num_classes,
        "sample_rate": sample_rate,
        "data": "synthetic" if synthetic else str(data),
        "precision": cfg.precision,
        "precision_default": not any(o.startswith("precision=") for o in overrides),
        "device": str(device),
        "compile": cfg.compile,
        "chunk_size": cfg.head.chunk_size,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world,
        "steps": steps,
        "seconds": seconds,
        "images_per_s": steps * batch_size * world / seconds,
        "peak_gib": peak,
    }
