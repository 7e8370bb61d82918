"""MegaFace scoring speed from features: identification (CMC, rank-1 at 10 ... N distractors) and verification
(TAR at FAR = 1e-6) in one pass, per exact-search backend, on synthetic features.

Data: 3,530 probes of 80 identities (centre + 1.4 x unit noise, genuine cosine about 0.34) and N distractors (default
1,000,000), 512-d float32, generated in blocks into a memory-mapped .npy in a temporary folder (bounded memory),
then scored by each backend in its own process so that peak memory is per backend:
- torch-cpu: facezoo.eval.megaface.evaluate, blockwise torch matmul + top-k on the CPU;
- faiss: the same with search="faiss" (exact IndexFlatIP, grown to each size);
- torch-cuda: blockwise on the GPU (only where CUDA is present; peak memory is GPU memory there).
Prints one markdown row per backend: wall time, peak memory, rank-1 at N and TAR@FAR=1e-6 (sanity: equal rows).

    python benchmarks/megaface_bench.py                       # 1,000,000 distractors, every backend available
    python benchmarks/megaface_bench.py --distractors 100000 --backends torch-cpu faiss
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK = 65_536


def generate(folder: Path, probes: int, ids: int, distractors: int, dim: int, seed: int = 0) -> None:
    """probes.npy, labels.npy, distractors.npy (memory-mapped, written block by block)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    labels = np.arange(probes) % ids
    p = centres[labels] + 1.4 * rng.standard_normal((probes, dim), dtype=np.float32)  # genuine cos ~ 1 / (1 + 1.4^2)
    np.save(folder / "probes.npy", p)
    np.save(folder / "labels.npy", labels)
    d = np.lib.format.open_memmap(folder / "distractors.npy", mode="w+", dtype=np.float32, shape=(distractors, dim))
    for a in range(0, distractors, BLOCK):
        b = min(a + BLOCK, distractors)
        d[a:b] = rng.standard_normal((b - a, dim), dtype=np.float32)
    d.flush()
    del d


def score(folder: Path, backend: str, sizes: list[int]) -> dict:
    """One backend's timing (run in a child process)."""
    import torch

    from facezoo.eval import megaface as mf

    probes = np.load(folder / "probes.npy")
    labels = np.load(folder / "labels.npy")
    dist = np.load(folder / "distractors.npy", mmap_mode="r")
    device = "cuda" if backend == "torch-cuda" else "cpu"
    search = "faiss" if backend == "faiss" else "torch"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    r = mf.evaluate(probes, labels, dist, ranks=(1, 5, 10), far=1e-6, sizes=sizes, device=device, search=search)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    n = sizes[-1]
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "backend": backend,
        "wall_s": wall,
        "peak_gib": peak / 2**30,
        "peak_kind": "GPU" if device == "cuda" else "RSS",
        "rank1": r["identification"][n]["rank1"],
        "tar": r["verification"][n]["tar"],
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=3530)
    ap.add_argument("--ids", type=int, default=80)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--backends", nargs="+", default=None, choices=("torch-cpu", "faiss", "torch-cuda"))
    ap.add_argument("--workdir", default=None, help="where the synthetic features go (default: a temporary folder)")
    ap.add_argument("--_child", nargs=2, metavar=("DIR", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [s for s in (10, 100, 1_000, 10_000, 100_000, 1_000_000) if s < args.distractors] + [args.distractors]
    if args._child:
        print(json.dumps(score(Path(args._child[0]), args._child[1], sizes)))
        return 0
    import torch

    backends = args.backends or ["torch-cpu", "faiss"] + (["torch-cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp), args.probes, args.ids, args.distractors, args.dim)
        print(
            f"generated {args.probes:,} probes ({args.ids} ids) and {args.distractors:,} distractors, "
            f"{args.dim}-d float32, in {time.perf_counter() - t0:.1f} s; sizes {sizes}",
            file=sys.stderr,
        )
        print(
            f"| backend | distractors | wall time (s), Id + Ver at {len(sizes)} sizes | peak memory (GiB) | "
            "rank-1 | TAR@FAR=1e-6 | threads |"
        )
        print("|---|---|---|---|---|---|---|")
        for b in backends:
            out = subprocess.run(
                [sys.executable, __file__, "--_child", tmp, b, "--distractors", str(args.distractors)],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            if out.returncode != 0:
                print(f"| {b} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            tar = "n/a (too few impostor pairs)" if r["tar"] is None else f"{100 * r['tar']:.2f}"
            print(
                f"| {b} | {args.distractors:,} | {r['wall_s']:.1f} | {r['peak_gib']:.2f} ({r['peak_kind']}) | "
                f"{100 * r['rank1']:.2f} | {tar} | {r['threads']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
