"""`facezoo data`: prepare / pack / convert / relabel / unpack / inspect / unpack-bin / synth (thin shells over
facezoo.data)."""

from __future__ import annotations

import argparse
import json


def _size(text: str) -> tuple[int, int]:
    """'112' or '112x96' (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size like 112 or 112x96, got {text!r}")
    return (parts[0], parts[-1])


def _format_options(args) -> dict:
    """Writer keywords given on the command line (only those set, so a writer that lacks one is not bothered)."""
    return {k: v for k, v in (("name", args.name), ("shard_size", args.shard_size)) if v is not None}


def _written(r: dict) -> str:
    files = {
        "recordio": "train.rec, train.idx, property",
        "tfrecord": f"{r.get('name')}.txt + {r.get('shards')} shard(s)",
        "folder": "<identity>/<n>.<ext>",
    }.get(r["format"], r["format"])
    size = r.get("image_size")
    return f"{r['images']} images of {r['identities']} identities into {r['out_dir']} ({files}" + (
        f", {size[0]}x{size[1]})" if size else ")"
    )


def _pack(args) -> int:
    from ..data.pack import pack

    r = pack(
        args.src,
        args.out_dir,
        image_size=args.image_size,
        quality=args.quality,
        format=args.format,
        **_format_options(args),
    )
    print(f"packed {_written(r)}")
    return 0


def _convert(args) -> int:
    from ..data.pack import convert

    r = convert(args.src, args.out_dir, args.format, **_format_options(args))
    print(f"converted {_written(r)}")
    return 0


def _relabel(args) -> int:
    from ..data.tfrecord import relabel

    r = relabel(args.index, args.out, mapping=args.map, keep=args.keep)
    print(
        f"wrote {r['index']}: {r['records']} records of {r['identities']} identities kept, {r['dropped']} dropped "
        "(shards untouched)"
    )
    return 0


def _unpack(args) -> int:
    from ..data.pack import unpack

    n = unpack(args.rec_dir, args.out_dir)
    print(f"wrote {n} images to {args.out_dir}/<label>/<id>.<ext>")
    return 0


def _inspect(args) -> int:
    from ..data.inspect import format_report, inspect

    report = inspect(args.path, scan=not args.sample)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _unpack_bin(args) -> int:
    from ..data.verification_bin import unpack_bin

    n = unpack_bin(args.bin, args.out_dir)
    print(f"wrote {n} images and pairs.txt ({n // 2} pairs) to {args.out_dir}")
    return 0


def _synth(args) -> int:
    from ..data.synthetic import synthesize

    extra = {} if args.val_identities is None else {"val_identities": args.val_identities}
    r = synthesize(
        args.out_dir,
        identities=args.identities,
        images_per_identity=args.images_per_identity,
        seed=args.seed,
        image_size=args.image_size,
        **extra,
    )
    print(f"synthesised into {args.out_dir}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return 0


def _add_format(p, required: bool = False) -> None:
    p.add_argument(
        "--format",
        required=required,
        default=None if required else "recordio",
        help="recordio (train.rec/.idx/property), tfrecord (NAME.txt + NAME/NAME-%%05d.tfrecord) or folder"
        + ("" if required else " (default recordio)"),
    )
    p.add_argument("--name", default=None, help="tfrecord: the set's name (default TFR-<out_dir name>)")
    p.add_argument(
        "--shard-size", type=int, default=None, metavar="N", help="tfrecord: records per shard (default 500000)"
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="convert and inspect datasets", description="Convert between dataset formats and check datasets."
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("pack", help="image folder or list file -> RecordIO, TFRecord + index, or image folder")
    p.add_argument("src", help="folder with one sub-folder per identity, or a 'relative/path label' list file")
    p.add_argument("out_dir")
    _add_format(p)
    p.add_argument(
        "--image-size",
        type=_size,
        default=None,
        metavar="H[xW]",
        help="resize (bilinear) and re-encode images of another size; default: store bytes unchanged",
    )
    p.add_argument("--quality", type=int, default=None, help="JPEG quality when re-encoding (default 95)")
    p.set_defaults(func=_pack)

    p = sub.add_parser("convert", help="any set facezoo reads -> RecordIO, TFRecord + index, or image folder")
    p.add_argument("src", help="RecordIO folder/.rec, TFRecord index or folder, image folder or list file")
    p.add_argument("out_dir")
    _add_format(p, required=True)
    p.set_defaults(func=_convert)

    p = sub.add_parser("relabel", help="rewrite a TFRecord index only: map labels or keep some identities")
    p.add_argument("index", help="TFace index NAME.txt (or the folder holding it)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--map", metavar="FILE", help="'old_label new_label' lines; records of unlisted labels dropped")
    how.add_argument("--keep", metavar="FILE", help="one label per line to keep, renumbered 0..K-1 in label order")
    p.add_argument("--out", default=None, metavar="FILE", help="write the new index here (default: in place)")
    p.set_defaults(func=_relabel)

    p = sub.add_parser("unpack", help="RecordIO or TFRecord set -> OUT_DIR/<label>/<id>.<ext> (bytes unchanged)")
    p.add_argument("rec_dir", help="folder with train.rec/train.idx or a .rec file; or a TFace index / its folder")
    p.add_argument("out_dir", help="new or empty folder")
    p.set_defaults(func=_unpack)

    p = sub.add_parser("inspect", help="counts, identities, image sizes, corrupt records")
    p.add_argument("path", help="RecordIO folder/.rec, image folder, list file or verification .bin")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sample", action="store_true", help="decode a sample of images instead of all")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("unpack-bin", help="verification .bin -> OUT_DIR/<index>.<ext> and pairs.txt")
    p.add_argument("bin", metavar="FILE.bin")
    p.add_argument("out_dir", help="new or empty folder")
    p.set_defaults(func=_unpack_bin)

    p = sub.add_parser("synth", help="generate a synthetic face-like training set and verification .bin files")
    p.add_argument("out_dir")
    p.add_argument("--identities", type=int, required=True)
    p.add_argument("--images-per-identity", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--val-identities",
        type=int,
        default=None,
        help="identities held out for the verification sets (default: the generator's)",
    )
    p.add_argument("--image-size", type=int, default=112)
    p.set_defaults(func=_synth)
