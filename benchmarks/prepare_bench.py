"""Images/s of `facezoo data prepare` on a synthetic raw tree: decode + detect + choose + align + dedup + write.

The tree is built in a temporary folder: `--identities` folders of `--images` photos each, every photo a synthetic
face (facezoo.data.synthetic) pasted at a random position, scale (about 90-250 px faces) and rotation on a
`--canvas` background, saved as JPEG. One row per worker count, timed end to end (the assembly step included):

    python benchmarks/prepare_bench.py --identities 20 --images 10 --workers 0,2,4
    python benchmarks/prepare_bench.py --identities 2 --images 2 --workers 0        # dry run

Images/s counts every photo, kept or not; 'faces kept' is what reached the output (found by the detector, chosen,
not removed as a near-duplicate).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facezoo.data.prepare import prepare
from facezoo.data.synthetic import identity_rng, image_rng, render_face, sample_identity
from facezoo.sdk.align import warp_affine


def build_tree(root: Path, identities: int, images: int, canvas: tuple[int, int], seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    h, w = canvas
    for i in range(identities):
        folder = root / f"person_{i:05d}"
        folder.mkdir(parents=True)
        params = sample_identity(identity_rng(seed, i))
        for j in range(images):
            crop = render_face(params, image_rng(seed, i, j), 112, nuisance=0.5)
            scale = rng.uniform(0.8, min(2.2, 0.8 * min(h, w) / 112))
            angle = np.radians(rng.uniform(-20, 20))
            c, s = scale * np.cos(angle), scale * np.sin(angle)
            tx, ty = rng.uniform(0, w - 140 * scale), rng.uniform(0, h - 140 * scale)
            T = np.array([[c, -s, tx], [s, c, ty]])
            back = np.clip(rng.normal(rng.uniform(60, 190), 20, (h, w, 3)), 0, 255)
            mask = warp_affine(np.full((112, 112), 255, np.uint8), T, (h, w))[..., None] / 255.0
            photo = np.rint(warp_affine(crop, T, (h, w)) * mask + back * (1 - mask)).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(photo).save(buf, "JPEG", quality=90)
            (folder / f"{j:04d}.jpg").write_bytes(buf.getvalue())
    return identities * images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--images", type=int, default=10, help="photos per identity")
    ap.add_argument("--canvas", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts (0 = in process)")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--format", default="recordio")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        n = build_tree(raw, args.identities, args.images, tuple(args.canvas))
        print(f"<!-- {n} photos, canvas {args.canvas[0]}x{args.canvas[1]}, {os.cpu_count()} CPUs -->")
        print("| detector | workers | photos | faces kept | seconds | images/s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for k, workers in enumerate(int(v) for v in args.workers.split(",")):
            out = Path(tmp) / f"out{k}"
            start = time.perf_counter()
            summary = prepare(raw, out, detector=args.detector, workers=workers, format=args.format, min_face=20)
            seconds = time.perf_counter() - start
            print(
                f"| {args.detector} | {workers} | {n} | {summary['kept']} | {seconds:.1f} | {n / seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
