"""`facezoo data`: prepare / pack / convert / relabel / unpack / inspect / unpack-bin / synth / mask (thin shells
over facezoo.data and facezoo.augment)."""

from __future__ import annotations

import argparse
import json

from . import COMMANDS
from ._sdk_args import add_quiet_arg, finite_json


def _size(text: str) -> tuple[int, int]:
    """'112' or '112x96' (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size like 112 or 112x96, got {text!r}")
    return (parts[0], parts[-1])


def _prepare(args) -> int:
    from ..data.prepare import PrepareOptions, format_summary, prepare

    opts = PrepareOptions(
        detector=args.detector,
        device=args.device,
        choose=args.choose,
        min_score=args.min_score,
        ambiguity=args.ambiguity,
        min_face=args.min_face,
        detect_max_side=args.detect_max_side,
        image_size=args.image_size,
        template=args.template,
        quality=args.quality,
        dedup=args.dedup,
        dedup_threshold=args.dedup_threshold,
        model=args.model,
        min_images=args.min_images,
        exclude=tuple(args.exclude),
        exclude_threshold=args.exclude_threshold,
        format=args.format,
        format_options=_format_options(args),
        workers=args.workers,
        work_dir=args.work_dir,
    )
    print(format_summary(prepare(args.raw_dir, args.out_dir, opts)))
    return 0


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
    print(json.dumps(finite_json(report), indent=2, allow_nan=False) if args.json else format_report(report))
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


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="raw photos (one folder per person) -> detected, aligned, de-duplicated training set + report.csv",
        description="Detect, choose and align one face per photo, remove duplicates, low-shot identities and "
        "test-set overlaps, and write the set atomically (resumable: rerun the same command after an interruption).",
    )
    p.add_argument("raw_dir", help="RAW_DIR/<person>/<photos, any format, nested>, or a 'path label' list file")
    p.add_argument("out_dir", help="new or empty folder; gets the set, report.csv and summary.json")
    _add_format(p)
    g = p.add_argument_group("faces")
    g.add_argument("--detector", default="mtcnn", help="detector name or name:path (default mtcnn)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    g.add_argument("--choose", default="largest", help="largest (box area) or center (nearest the image centre)")
    g.add_argument("--min-score", type=float, default=0.9, help="ignore detections below this score (default 0.9)")
    g.add_argument(
        "--ambiguity",
        type=float,
        default=0.5,
        metavar="R",
        help="reject a photo when another face's area >= R x the chosen face's (default 0.5)",
    )
    g.add_argument("--min-face", type=float, default=32, metavar="PX", help="shorter box side, pixels (default 32)")
    g.add_argument(
        "--detect-max-side", type=int, default=1024, metavar="PX", help="detect on photos downscaled to this side"
    )
    g.add_argument("--image-size", type=_size, default=(112, 112), metavar="H[xW]", help="crop size (default 112)")
    g.add_argument("--template", default=None, metavar="FILE", help="5 'x y' lines in crop pixels (default ArcFace)")
    g.add_argument("--quality", type=int, default=95, help="JPEG quality of the crops (default 95)")
    g = p.add_argument_group("set hygiene")
    g.add_argument("--dedup", default="phash", help="phash, embedding (needs --model) or none (default phash)")
    g.add_argument(
        "--dedup-threshold",
        type=float,
        default=None,
        help="phash: max Hamming distance of 64 bits (default 8); embedding: min cosine (default 0.95)",
    )
    g.add_argument("--min-images", type=int, default=1, help="drop identities left with fewer photos (default 1)")
    g.add_argument("--exclude", nargs="+", default=[], metavar="BIN", help="test sets (.bin) whose people to drop")
    g.add_argument(
        "--exclude-threshold",
        type=float,
        default=0.5,
        help="cosine of an identity's mean embedding with a test image that counts as the same person (default 0.5)",
    )
    g.add_argument("--model", default=None, help="recognition model for --exclude and --dedup embedding")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=int, default=0, help="processes (default 0: in this process)")
    g.add_argument("--work-dir", default=None, help="journal folder (default OUT_DIR.prepare-work beside OUT_DIR)")
    add_quiet_arg(p)
    p.set_defaults(func=_prepare)


def _mask(args) -> int:
    from ..augment.sets import MaskSetOptions, mask_set

    opts = MaskSetOptions(
        method=args.method,
        texture=args.texture,
        occluders=args.occluders,
        p=args.p,
        seed=args.seed,
        kind=args.kind,
        pairs=args.pairs,
        landmarks=args.landmarks,
        detect=args.detect,
        device=args.device,
        probe_root=args.probe_root,
        quality=args.quality,
        workers=args.workers,
        preview=args.preview,
        preview_count=args.preview_count,
    )
    r = mask_set(args.src, args.out, opts)
    counts = ", ".join(f"{r[k]} {k}" for k in ("masked", "unchanged", "kept", "no_face") if r.get(k))
    print(f"masked {r['kind']} {r['source']} -> {r['out']}: {counts} ({r['seconds']} s)")
    if r["textures"]:
        print("textures: " + ", ".join(f"{k} {v}" for k, v in sorted(r["textures"].items())))
    if r.get("preview"):
        print(f"contact sheet: {r['preview']}")
    return 0


def _add_mask(sub) -> None:
    p = sub.add_parser(
        "mask",
        help="add virtual face masks (2-D or 3-D) and occluders to a set: image folder, RecordIO, .bin, MegaFace",
        description="Add face masks to every image of a set, deterministically from --seed, written atomically. A "
        ".bin gets one image of each pair masked (the masked-verification protocol); a MegaFace root gets its "
        "FaceScrub probes masked into OUT (then: facezoo eval-megaface MODEL --root ROOT --masked OUT). Aligned "
        "crops use the alignment template's points; --landmarks or --detect give them for other images.",
    )
    p.add_argument("src", help="a verification .bin, a RecordIO folder, a MegaFace root, or a folder of images")
    p.add_argument("out", help="new .bin file (for a .bin) or new/empty folder")
    p.add_argument("--method", choices=("2d", "3d"), default="3d", help="2d: warped frontal mask; 3d: posed mask "
                   "surface, follows yaw and pitch (default 3d)")  # fmt: skip
    p.add_argument(
        "--texture",
        default=None,
        metavar="SPEC",
        help="textures and probabilities: a mix (insightface: white .4 blue .4 black .1 green .1, the default; "
        "procedural), names (surgical_white|blue|green|black, cloth, patterned, kn95) as name:p,name:p, or image "
        "files (PNG with alpha, or image.jpg+alpha.png)",
    )
    p.add_argument("--occluders", default=None, metavar="SPEC",
                   help="also add occluders, each with its probability: glasses:0.2,sunglasses:0.1,headband,"
                   "headscarf,hand,erase")  # fmt: skip
    p.add_argument("--p", type=float, default=1.0, help="probability that an image gets a mask (default 1)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same output (default 0)")
    p.add_argument("--kind", choices=("bin", "recordio", "megaface", "folder"), default=None,
                   help="what SRC is (default: found from it)")  # fmt: skip
    p.add_argument("--pairs", choices=("one", "both"), default="one", help=".bin: mask the second image of each "
                   "pair (one, default) or both")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--landmarks", default=None, metavar="FILE",
                       help="'key x1 y1 ... xP yP' lines (P = 5, 68, 98 or 106; key: path relative to SRC, or the "
                       "0-based image index of a .bin / RecordIO)")  # fmt: skip
    where.add_argument("--detect", nargs="?", const="mtcnn", default=None, metavar="DETECTOR",
                       help="find the landmarks with a detector (default mtcnn; or scrfd:/path.onnx ...)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="detector device (default cpu)")
    p.add_argument("--probe-root", default=None, help="MegaFace: FaceScrub image folder (default: found in SRC)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the masked images (default 95)")
    p.add_argument("--workers", type=int, default=0, help="processes (default 0: in this process)")
    p.add_argument("--preview", default=None, metavar="PNG", help="write a contact sheet of originals and results")
    p.add_argument("--preview-count", type=int, default=16, help="images on the contact sheet (default 16)")
    p.set_defaults(func=_mask)


@COMMANDS.register("data")
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="convert and inspect datasets", description="Convert between dataset formats and check datasets."
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    _add_prepare(sub)

    p = sub.add_parser("pack", help="image folder or list file -> RecordIO, TFRecord + index, or image folder")
    p.add_argument("src", help="folder with one sub-folder per identity, or a 'relative/path label' list file")
    p.add_argument("out_dir", help="folder for the packed set (replaced as a whole if it holds one)")
    _add_format(p)
    p.add_argument(
        "--image-size",
        type=_size,
        default=None,
        metavar="H[xW]",
        help="resize (bilinear) and re-encode images of another size; default: store bytes unchanged",
    )
    p.add_argument("--quality", type=int, default=None, help="JPEG quality when re-encoding (default 95)")
    add_quiet_arg(p)
    p.set_defaults(func=_pack)

    p = sub.add_parser("convert", help="any set facezoo reads -> RecordIO, TFRecord + index, or image folder")
    p.add_argument("src", help="RecordIO folder/.rec, TFRecord index or folder, image folder or list file")
    p.add_argument("out_dir", help="folder for the converted set")
    _add_format(p, required=True)
    add_quiet_arg(p)
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
    add_quiet_arg(p)
    p.set_defaults(func=_unpack)

    p = sub.add_parser("inspect", help="counts, identities, image sizes, corrupt records")
    p.add_argument("path", help="RecordIO folder/.rec, image folder, list file or verification .bin")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sample", action="store_true", help="decode a sample of images instead of all")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("unpack-bin", help="verification .bin -> OUT_DIR/<index>.<ext> and pairs.txt")
    p.add_argument("bin", metavar="FILE.bin", help="InsightFace verification .bin")
    p.add_argument("out_dir", help="new or empty folder")
    p.set_defaults(func=_unpack_bin)

    p = sub.add_parser("synth", help="generate a synthetic face-like training set and verification .bin files")
    p.add_argument("out_dir", help="folder for train/ and the verification .bin files")
    p.add_argument("--identities", type=int, required=True, help="training identities to render")
    p.add_argument("--images-per-identity", type=int, required=True, help="images of each training identity")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same files (default 0)")
    p.add_argument(
        "--val-identities",
        type=int,
        default=None,
        help="identities held out for the verification sets (default: the generator's)",
    )
    p.add_argument("--image-size", type=int, default=112, help="square image side in pixels (default 112)")
    add_quiet_arg(p)
    p.set_defaults(func=_synth)

    _add_mask(sub)
