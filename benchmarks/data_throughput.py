"""Images/s the training input pipeline delivers, decode included, without a model.

Paths measured over a RecordIO (a synthetic one is written to a temporary folder unless --data is given):
- decode, 1 core: Pillow decode of every image in this process, no DataLoader (the per-core ceiling).
- cpu, N workers: RecordDataset (decode in workers) + Collate through a DataLoader, as data.decode=cpu trains;
  on a GPU machine the batches also go through DevicePrefetcher to the GPU (pinned memory, side stream).
- read, N workers: the workers only read the encoded bytes (EncodedCollate), no decode: the I/O part.
- gpu, N workers: bytes from the workers, decoded by GpuJpegDecoder (nvJPEG) inside DevicePrefetcher, as
  data.decode=gpu trains. Only where CUDA and torchvision are present.

Training on RecordIO reaches >= 90% of the synthetic-input figure (`facezoo bench train`, issue 3) when the
pipeline delivers comfortably more than the model consumes and leaves the training loop's core free: compare a
row here with the synthetic images/s on the same machine (--train-rate prints the ratio).

    python benchmarks/data_throughput.py --workers 0,1,2 --batches 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from facezoo.data.gpu_decode import GpuJpegDecoder
from facezoo.data.image import decode_image
from facezoo.data.loader import Collate, EncodedCollate, available_cores
from facezoo.data.prefetch import DevicePrefetcher
from facezoo.data.recordio import RecordDataset
from facezoo.errors import ConfigError


def make_rec(folder: Path, images: int, size: int) -> Path:
    from facezoo.data.synthetic import synthesize

    per_id = 16
    synthesize(
        folder,
        identities=max(1, images // per_id),
        images_per_identity=per_id,
        image_size=size,
        val_pairs=0,
        workers=available_cores(),
    )
    return folder / "train"


def timed(batches, warmup: int, sync=lambda: None) -> float:
    """Images/s over the batches after the first `warmup` (worker start-up excluded)."""
    n, t0 = 0, None
    for k, batch in enumerate(batches):
        if k == warmup:
            sync()
            t0 = time.perf_counter()
        if k >= warmup:
            n += len(batch["labels"])
    sync()
    return n / (time.perf_counter() - t0) if t0 is not None and n else float("nan")


def loader(ds, collate, workers: int, batch_size: int, batches: int, pin: bool):
    sampler = RandomSampler(ds, num_samples=batch_size * batches, generator=torch.Generator().manual_seed(0))
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        drop_last=True,
        prefetch_factor=4 if workers else None,
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="a RecordIO folder or .rec file (default: a synthetic one)")
    p.add_argument("--images", type=int, default=1024, help="synthetic images to write (default 1024)")
    p.add_argument("--size", type=int, default=112, help="synthetic image size (default 112)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default 0,1,2)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=20, help="timed batches per row (default 20)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--train-rate", type=float, help="synthetic-input training images/s to compare with")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else make_rec(Path(tmp) / "synth", args.images, args.size)
        ds = RecordDataset(data)
        size = ds.image_size or ds[0][0].shape[:2]
        print(
            f"data {data}: {len(ds)} images, {size[0]}x{size[1]}; device {device}; "
            f"{available_cores()} cores available; batch {args.batch_size}"
        )

        rows = []
        n = min(len(ds), 512)
        for i in range(min(n, 16)):  # warm up: Pillow plugins, page cache
            decode_image(ds.read_encoded(i))
        t0 = time.perf_counter()
        for i in range(n):
            decode_image(ds.read_encoded(i))
        rows.append(("decode, 1 core", "-", n / (time.perf_counter() - t0)))

        try:
            gpu = GpuJpegDecoder(size, device, skip_corrupt=True)
        except ConfigError as e:
            gpu = None
            print(f"gpu path skipped: {e}")
        total = args.warmup + args.batches
        for w in (int(v) for v in args.workers.split(",")):
            ds.decode = True
            cpu = loader(ds, Collate(size), w, args.batch_size, total, cuda)
            rows.append(("cpu", w, timed(DevicePrefetcher(cpu, device), args.warmup, sync)))
            ds.decode = False
            raw = loader(ds, EncodedCollate(), w, args.batch_size, total, False)
            rows.append(("read", w, timed(iter(raw), args.warmup)))
            if gpu is not None:
                enc = loader(ds, EncodedCollate(), w, args.batch_size, total, True)
                rows.append(("gpu", w, timed(DevicePrefetcher(enc, device, transform=gpu), args.warmup, sync)))
        ds.decode = True

    print(f"{'path':<16} {'workers':>7} {'images/s':>10}" + ("  vs --train-rate" if args.train_rate else ""))
    for path, w, rate in rows:
        extra = f"  {rate / args.train_rate:6.0%}" if args.train_rate else ""
        print(f"{path:<16} {w!s:>7} {rate:10,.0f}{extra}")


if __name__ == "__main__":
    main()
