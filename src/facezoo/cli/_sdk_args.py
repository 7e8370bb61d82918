"""Options and helpers shared by the SDK commands (detect, align, embed, verify, identify, gallery, calibrate)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path


def add_detector_args(p) -> None:
    p.add_argument(
        "--detector",
        default="mtcnn",
        metavar="SPEC",
        help="mtcnn (weights from `facezoo models fetch mtcnn`), dlib_mmod (`facezoo models fetch dlib`), "
        "scrfd:/path/det_10g.onnx or retinaface:/path/model.onnx",
    )
    p.add_argument("--max-faces", type=int, default=None, metavar="N", help="keep at most N faces per image")
    p.add_argument("--min-score", type=float, default=0.5, metavar="S", help="drop detections with a score below S")


def add_device_arg(p) -> None:
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (cuda if available), cpu, cuda or cuda:N; cuda without CUDA is an error",
    )


MODEL_HELP = (
    "facezoo model.pt / checkpoint.pt, an .onnx recognition model, or a pretrained model name (facezoo models list)"
)


def add_model_args(p, required: bool = True, batch_size: int = 32) -> None:
    """--model and add_runtime_args' options."""
    p.add_argument("--model", required=required, metavar="M", help=MODEL_HELP)
    add_runtime_args(p, batch_size)


def add_runtime_args(p, batch_size: int = 32) -> None:
    """--runtime, the preprocessing of ONNX files without metadata (--mean --std --channel-order), --batch-size."""
    p.add_argument(
        "--runtime",
        default=None,
        metavar="NAME",
        help="torch, onnxruntime, openvino or tensorrt (default: by file type, .pt torch, .onnx onnxruntime)",
    )
    p.add_argument(
        "--mean",
        type=float,
        nargs="+",
        default=None,
        metavar="M",
        help="pixel mean (one value, or 3 in the network's channel order), for ONNX files without facezoo "
        "metadata (127.5 for insightface w600k_r50.onnx)",
    )
    p.add_argument(
        "--std",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="pixel std (one value or 3), for ONNX files without facezoo metadata",
    )
    p.add_argument(
        "--channel-order",
        choices=("RGB", "BGR"),
        default=None,
        help="the network's channel order, for ONNX files without facezoo metadata",
    )
    p.add_argument("--batch-size", type=int, default=batch_size, help="faces per forward pass")


def add_quiet_arg(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr (they show only on a terminal)")


def preprocessing(args) -> dict:
    """load_model's runtime, mean, std and channel_order from add_model_args' options (one value: a float)."""
    one = lambda v: v[0] if isinstance(v, list) and len(v) == 1 else v
    return {
        "runtime": getattr(args, "runtime", None),
        "mean": one(getattr(args, "mean", None)),
        "std": one(getattr(args, "std", None)),
        "channel_order": getattr(args, "channel_order", None),
    }


def check_files(paths) -> list[Path]:
    """The paths, after checking each is a file (DataError naming the first that is not), before models load."""
    from ..errors import DataError

    out = []
    for p in map(Path, paths):
        if not p.is_file():
            what = "is a folder, not an image file" if p.is_dir() else "no such file"
            raise DataError(f"{p}: {what}. Check the path.")
        out.append(p)
    return out


def build_analyzer(args, recognizer: bool = True, crop_size=None):
    """A FaceAnalyzer from the parsed options; says on stderr which device runs the model."""
    from ..sdk.pipeline import FaceAnalyzer

    model = getattr(args, "model", None) if recognizer else None
    fa = FaceAnalyzer(
        getattr(args, "detector", "mtcnn"),
        model,
        device=args.device,
        max_faces=getattr(args, "max_faces", None),
        min_det_score=getattr(args, "min_score", 0.5),
        batch_size=getattr(args, "batch_size", 32),
        crop_size=crop_size,
        quality=getattr(args, "face_quality", None),
        **preprocessing(args),
    )
    if fa.recognizer is not None:
        log(fa.recognizer.describe())
    return fa


def face_dict(face, embedding: bool = False) -> dict:
    """A face as JSON: bbox, det_score, kps (and its embedding when asked)."""
    d = face.to_dict()
    if not embedding:
        d.pop("embedding", None)
    return d


def finite_json(obj):
    """obj with every non-finite float (NaN, inf: not JSON) replaced by None, numpy scalars and arrays as Python."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return finite_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj) -> None:
    """One line of strict JSON (no bare NaN / Infinity: those become null); every command prints JSON this way."""
    print(json.dumps(finite_json(obj), allow_nan=False), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ImageInput:
    """An image to process: its path, the name its outputs take (the file name, or its path relative to the folder
    it was found in) and whether it was found by walking a folder (then a bad file is skipped, not fatal)."""

    path: Path
    name: Path
    found: bool = False


SHOWN = 20  # skipped files listed one per line; the rest are counted


def collect_images(paths) -> list[ImageInput]:
    """Files as given, and every image file under a given folder (recursively, sorted; hidden entries and files
    that are not images by their suffix are skipped and listed on stderr, the first SHOWN by name). DataError for a
    path that does not exist; before any model loads."""
    from ..data.folders import is_image_file
    from ..errors import DataError

    out, skipped = [], []
    for root in map(Path, paths):
        if root.is_file():
            out.append(ImageInput(root, Path(root.name)))
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root)
                if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                    continue
                if is_image_file(p):
                    out.append(ImageInput(p, rel, found=True))
                else:
                    skipped.append(p)
        else:
            raise DataError(f"{root}: no such file or folder. Check the path.")
    for p in skipped[:SHOWN]:
        log(f"skipped {p}: not an image file (by its suffix)")
    if len(skipped) > SHOWN:
        log(f"skipped {len(skipped) - SHOWN} more files that are not images")
    if not out:
        raise DataError(f"no image files in {', '.join(map(str, paths))} (looked for {', '.join(_suffixes())}).")
    return out


def _suffixes() -> list[str]:
    from ..data.folders import IMAGE_SUFFIXES

    return sorted(IMAGE_SUFFIXES)


def read_input(item: ImageInput):
    """The decoded image, or None (logged as skipped) when a file found in a folder cannot be decoded; a file named
    on the command line that cannot be decoded is an error (DataError, exit 2)."""
    from ..data.image import read_image_file
    from ..errors import DataError

    try:
        return read_image_file(item.path)
    except DataError as e:
        if not item.found:
            raise
        log(f"skipped {item.path}: {e}")
        return None


ANNOTATED = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}


def annotated_path(out_dir, item: ImageInput) -> Path:
    """out_dir/<the input's name>, as .png unless the input is a JPEG or PNG."""
    name = item.name if item.name.suffix.lower() in ANNOTATED else item.name.with_suffix(".png")
    return Path(out_dir) / name


def write_annotated(image, faces, out_dir, item: ImageInput, labels=None) -> str:
    """Write a copy of `image` with each face's box, points and label (default: its detection score)."""
    from ..data.image import encode_image
    from ..io import atomic_write
    from ..sdk.draw import draw_faces

    out = annotated_path(out_dir, item)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        f.write(encode_image(draw_faces(image, faces, labels=labels), ANNOTATED.get(out.suffix.lower(), "png")))
    return str(out)


def unique_outputs(items, out_dir) -> None:
    """ConfigError when two inputs would write the same annotated file."""
    from ..errors import ConfigError

    seen: dict[Path, Path] = {}
    for item in items:
        out = annotated_path(out_dir, item)
        if out in seen and seen[out] != item.path:
            raise ConfigError(
                f"{seen[out]} and {item.path} would both be written to {out}; run them into separate output folders."
            )
        seen[out] = item.path


def unique_stems(paths) -> None:
    """ConfigError when two inputs would write the same output name."""
    from ..errors import ConfigError

    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.stem in seen and seen[p.stem] != p:
            raise ConfigError(
                f"{seen[p.stem]} and {p} have the same name '{p.stem}', so their outputs would "
                "collide; run them into separate --out folders."
            )
        seen[p.stem] = p
