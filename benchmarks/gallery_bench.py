"""Gallery search at scale: exact vs faiss IVF / HNSW on a gallery of clustered synthetic embeddings.

    python benchmarks/gallery_bench.py --identities 100000 --per-identity 10 --kinds ivf   # 1,000,000 faces

Prints one markdown row per index kind: entries, build time (including the save beside the gallery, G.db.faiss),
recall@k against exact search, ms per query (approximate and exact, batches of queries), the time another process
takes to load the saved index (a fresh Gallery.open, first search), and one enrolment's in-place index update.
Vectors: identity centres on the unit sphere plus per-image noise, so neighbourhoods look like a face gallery's;
each query is a new image of an enrolled identity. The gallery file is written to a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from facezoo.sdk.gallery import Gallery


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def noisy(rng, centres: np.ndarray, per: int, noise: float) -> np.ndarray:
    """per rows for each centre: centre + Gaussian noise, normalised (one identity's images)."""
    x = np.repeat(centres, per, axis=0)
    return unit(x + noise * rng.standard_normal(x.shape, dtype=np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=100_000)
    ap.add_argument("--per-identity", type=int, default=10)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--noise",
        type=float,
        default=0.025,
        help="per-image noise per dimension (default 0.025: same-identity cosine about 0.8)",
    )
    ap.add_argument("--kinds", nargs="+", default=["ivf"], choices=["ivf", "hnsw"])
    ap.add_argument("--ef-construction", type=int, default=40, help="hnsw build candidates (default 40, faiss's)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=5000, help="identities written per transaction")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = args.identities * args.per_identity
    centres = unit(rng.standard_normal((args.identities, args.dim), dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery.open(Path(tmp) / "g.db", embedding_size=args.dim)
        t0 = time.perf_counter()
        per = args.per_identity
        for start in range(0, args.identities, args.chunk):
            stop = min(start + args.chunk, args.identities)
            x = noisy(rng, centres[start:stop], per, args.noise)
            g.add_many([(f"id{i:07d}", x[j * per : (j + 1) * per]) for j, i in enumerate(range(start, stop))])
        write_s = time.perf_counter() - t0
        # queries: a new image of an enrolled identity each
        q = noisy(rng, centres[rng.choice(args.identities, args.queries, replace=False)], 1, args.noise)
        t0 = time.perf_counter()
        g.search(q, top_k=args.k, per_identity=False, index="exact")
        exact_ms = 1e3 * (time.perf_counter() - t0) / args.queries
        print(
            f"| entries | kind | build+save s | recall@{args.k} | ms/query approx | ms/query exact | load s | add 1 s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for kind in args.kinds:
            t0 = time.perf_counter()
            g.build_index(kind, ef_construction=args.ef_construction)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            g.search(q, top_k=args.k, per_identity=False, index=kind)
            approx_ms = 1e3 * (time.perf_counter() - t0) / args.queries
            recall = g.recall_at_k(q, k=args.k, index=kind)
            t0 = time.perf_counter()
            with Gallery.open(g.path, index_threshold=0) as other:  # as a serve worker would: load, not rebuild
                other.search(q[:1], top_k=args.k, per_identity=False)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            g.add(f"new-{kind}", noisy(rng, centres[:1], args.per_identity, args.noise))  # index updated in place
            add_s = time.perf_counter() - t0
            g.remove(f"new-{kind}")
            print(
                f"| {n:,} | {kind} | {build_s:.1f} | {recall:.4f} | {approx_ms:.2f} | {exact_ms:.2f} | {load_s:.1f} "
                f"| {add_s:.2f} |"
            )
        g.close()
    print(f"(writing {n:,} entries to SQLite took {write_s:.0f} s)")


if __name__ == "__main__":
    main()
