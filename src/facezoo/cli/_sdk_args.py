"""Options and helpers shared by the SDK commands (detect, align, embed, verify, identify, gallery, calibrate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_detector_args(p) -> None:
    p.add_argument(
        "--detector",
        default="mtcnn",
        metavar="SPEC",
        help="mtcnn (default; weights from `facezoo models fetch mtcnn`), dlib_mmod (`facezoo models fetch dlib`), "
        "scrfd:/path/det_10g.onnx or retinaface:/path/model.onnx",
    )
    p.add_argument("--max-faces", type=int, default=None, metavar="N", help="keep at most N faces per image")
    p.add_argument(
        "--min-score", type=float, default=0.5, metavar="S", help="drop detections with a score below S (default 0.5)"
    )


def add_device_arg(p) -> None:
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (cuda if available, default), cpu, cuda or cuda:N; cuda without CUDA is an error",
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
        help="torch or onnxruntime (default: by file type, .pt torch, .onnx onnxruntime)",
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
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"faces per forward pass (default {batch_size})")


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


def print_json(obj) -> None:
    print(json.dumps(obj), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
