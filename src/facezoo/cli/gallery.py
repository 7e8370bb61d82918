"""`facezoo gallery ACTION G ...`: a persistent gallery of identities: one SQLite file G.db, or a postgresql://
URL (PostgreSQL + pgvector, pip install 'facezoo[pgvector]'; `?gallery=NAME` picks one of several in a database).

enroll G FOLDER --model M [--replace]   FOLDER/<name>/<image>: best face per image, one identity per folder
add G NAME IMAGES... --model M [--replace]
    enroll and add take --quality Q --min-quality T: faces of lower quality are refused (enroll: reported, skipped)
remove G NAME
list G
index G --kind ivf|hnsw|exact [--nprobe 16] [--ef-construction 40] [--ef-search 128] [--recall] [--k 10]
      [--queries 1000]
     build an approximate index (faiss beside an SQLite gallery, G.db.faiss; pgvector's in PostgreSQL) and time it;
     --recall measures recall@k of its entries against exact search, with stored embeddings as queries, and
     records it with the index. `identify` and `serve` search through this index from --index-threshold entries
     (default 20,000) up, exactly below; adds and removes keep it current; --kind exact drops it.
"""

from __future__ import annotations

from . import COMMANDS
from ._sdk_args import (
    add_detector_args,
    add_device_arg,
    add_model_args,
    add_quiet_arg,
    build_analyzer,
    check_files,
    log,
    print_json,
)


@COMMANDS.register("gallery")
def register(sub) -> None:
    p = sub.add_parser(
        "gallery",
        help="enroll, add, remove, list identities; approximate index recall",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = actions.add_parser("enroll", help="enroll FOLDER/<name>/<image>")
    e.add_argument("gallery", metavar="G", help="gallery file or postgresql:// URL")
    e.add_argument("folder", metavar="FOLDER", help="one sub-folder of images per person, named after them")
    e.add_argument("--replace", action="store_true", help="replace identities already enrolled")
    a = actions.add_parser("add", help="add images to one identity")
    a.add_argument("gallery", metavar="G", help="gallery file or postgresql:// URL")
    a.add_argument("name", metavar="NAME", help="the identity to add to (created if new)")
    a.add_argument("images", nargs="+", metavar="IMAGE", help="images of that person (the best face of each)")
    a.add_argument("--replace", action="store_true", help="replace the identity's previous entries")
    for q in (e, a):
        q.add_argument(
            "--quality",
            dest="face_quality",
            default=None,
            metavar="Q",
            help="face image quality method: baseline, magface_norm (the model's norm), sdd_fiqa:Q.pt",
        )
        q.add_argument(
            "--min-quality", type=float, default=None, metavar="T", help="with --quality: refuse faces below T"
        )
        add_model_args(q)
        add_detector_args(q)
        add_device_arg(q)
        add_quiet_arg(q)
    r = actions.add_parser("remove", help="remove an identity")
    r.add_argument("gallery", metavar="G", help="gallery file or postgresql:// URL")
    r.add_argument("name", metavar="NAME", help="the identity to remove (`facezoo gallery list G` shows them)")
    ls = actions.add_parser("list", help="identities and their number of faces")
    ls.add_argument("gallery", metavar="G", help="gallery file or postgresql:// URL")
    ix = actions.add_parser("index", help="build an approximate index; --recall measures it against exact search")
    ix.add_argument("gallery", metavar="G", help="gallery file or postgresql:// URL")
    ix.add_argument(
        "--kind", choices=("ivf", "hnsw", "exact"), default="ivf", help="index kind (default ivf; exact drops it)"
    )
    ix.add_argument("--nprobe", type=int, default=16, help="ivf: cells searched per query (default 16)")
    ix.add_argument(
        "--ef-construction",
        type=int,
        default=40,
        help="hnsw: build candidates (default 40; 128 for higher recall on large galleries)",
    )
    ix.add_argument("--ef-search", type=int, default=128, help="hnsw: search candidates (default 128)")
    ix.add_argument("--recall", action="store_true", help="measure recall@k against exact search")
    ix.add_argument("--k", type=int, default=10, help="k of recall@k (default 10)")
    ix.add_argument("--queries", type=int, default=1000, help="stored embeddings used as queries (default 1000)")
    p.set_defaults(func=run)


def run(args) -> int:
    return {"enroll": _enroll, "add": _add, "remove": _remove, "list": _list, "index": _index}[args.action](args)


def _open(path):
    from ..sdk.gallery import open_gallery

    return open_gallery(path, create=False)


def _enroll(args) -> int:
    from pathlib import Path

    from ..errors import DataError

    if not Path(args.folder).is_dir():
        raise DataError(f"{args.folder}: not a folder. Pass a folder with one sub-folder of images per person.")
    fa = build_analyzer(args)
    result = fa.enroll_folder(args.gallery, args.folder, replace=args.replace, min_quality=args.min_quality)
    for path, message in result.errors:
        log(f"skipped {path}: {message}")
    print_json(
        {
            "gallery": str(args.gallery),
            "identities": result.identities,
            "images": result.images,
            "errors": [{"path": p, "message": m} for p, m in result.errors],
        }
    )
    return 0


def _add(args) -> int:
    paths = check_files(args.images)
    fa = build_analyzer(args)
    n = fa.enroll(args.gallery, args.name, paths, replace=args.replace, min_quality=args.min_quality)
    print_json({"gallery": str(args.gallery), "identity": args.name, "added": n})
    return 0


def _remove(args) -> int:
    with _open(args.gallery) as g:
        n = g.remove(args.name)
    print_json({"gallery": str(args.gallery), "removed": args.name, "entries": n})
    return 0


def _list(args) -> int:
    with _open(args.gallery) as g:
        ids = [{"name": name, "entries": g.count(name)} for name in g.identities()]
        print_json(
            {
                "gallery": str(args.gallery),
                "identities": ids,
                "faces": len(g),
                "embedding_size": g.embedding_size,
                "model_key": g.model_key,
                "index": g.index_info(),
            }
        )
    return 0


def _index(args) -> int:
    import time

    import numpy as np

    from ..errors import ConfigError

    if args.k < 1 or args.queries < 1:
        raise ConfigError("--k and --queries must be positive.")
    with _open(args.gallery) as g:
        if args.kind == "exact":
            g.build_index("exact")
            print_json({"gallery": str(args.gallery), "kind": "exact", "index": None})
            return 0
        if len(g) == 0:
            raise ConfigError(f"{args.gallery}: the gallery is empty; enroll identities first.")
        t0 = time.perf_counter()
        g.build_index(args.kind, nprobe=args.nprobe, ef_search=args.ef_search, ef_construction=args.ef_construction)
        record = {
            "gallery": str(args.gallery),
            "kind": args.kind,
            "entries": len(g),
            "build_s": round(time.perf_counter() - t0, 4),
        }
        if args.recall:
            vectors = np.concatenate([np.stack([e.embedding for e in g.entries(n)]) for n in g.identities()])
            rng = np.random.default_rng(0)
            q = vectors[np.sort(rng.choice(len(vectors), min(args.queries, len(vectors)), replace=False))]
            record["recall_at_k"] = round(g.recall_at_k(q, k=args.k, index=args.kind), 4)
            record.update(k=min(args.k, len(vectors)), queries=len(q))
            for kind in ("exact", args.kind):
                t0 = time.perf_counter()
                g.search(q, top_k=args.k, index=kind)
                record[f"search_ms_per_query_{kind}"] = round(1000 * (time.perf_counter() - t0) / len(q), 4)
        record["index"] = g.index_info()
    print_json(record)
    return 0
