"""Verification thresholds chosen by target false accept rate (FAR), and writing them into a model file.

Rule (facezoo.far, the one evaluation reports by): predict "same" iff cosine >= t. FAR(t) = #{impostor scores >= t}
/ n. For a target far, t is the smallest threshold with FAR(t) <= far: with impostor scores sorted descending
s_1 >= s_2 >= ... >= s_n and k = floor(far * n) (exact decimal arithmetic), every t > s_(k+1) accepts at most k
impostors and every t <= s_(k+1) accepts at least k + 1, so t = the next float64 above s_(k+1). A far below 1/n
cannot be measured (k = 0 would only say "no impostor accepted in n"): that is a ConfigError asking for at least
ceil(1/far) impostor pairs, where evaluation reports n/a.

Scores for calibration are the ones FaceAnalyzer.verify computes: cosine of the L2-normalised embeddings of the
two aligned crops, single view (no flip) by default; flip=True uses e(x) + e(flip(x)) for pipelines that do.

Operating point (`operating_point`, what verify / identify decide with when no FAR or threshold is asked for): the
model's lowest calibrated FAR (the strictest threshold its calibration measured), else its stated default
threshold (DEFAULT_KEY, e.g. dlib_resnet's), else a ConfigError giving the commands that give it one.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FacezooError, ModelError
from ..far import check_far, far_key, min_impostors, strict_threshold, unmeasurable
from ..io import atomic_write
from ..progress import bar

DEFAULT_FARS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# Beside the far_key entries, a model's thresholds may hold its published default operating point as a cosine
# under this key (dlib_resnet: dlib's Euclidean 0.6 rule, see models/dlib/convert.py); verify uses it when no FAR
# is asked for.
DEFAULT_KEY = "default"
SOURCES = ("calibrated", "model default", "--threshold")  # operating_point()["source"]


def calibrate_thresholds(impostor_scores, fars) -> dict[str, float]:
    """{far_key(far): t} with t the smallest threshold whose FAR (fraction of impostor scores >= t) is <= far."""
    s = np.asarray(impostor_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ConfigError("no impostor scores: calibration needs pairs of different people.")
    if not np.isfinite(s).all():
        raise DataError("impostor scores contain NaN or infinite values; check the embeddings.")
    out = {}
    for far in fars:
        f = check_far(far, "FAR")
        reason = unmeasurable(f, s.size)
        if reason is not None:
            raise ConfigError(f"FAR {f:g} {reason}; add pair sets (--bin, --folder) or choose a larger FAR.")
        out[far_key(f)] = float(np.nextafter(strict_threshold(s, f), np.inf))  # "s >= t" form of "s > s_(k+1)"
    return out


def supported_fars(n_impostors: int, fars=DEFAULT_FARS) -> list[float]:
    """The fars that n impostor pairs can measure (far * n >= 1)."""
    return [f for f in fars if unmeasurable(f, n_impostors) is None]


def threshold_report(genuine_scores, impostor_scores, thresholds: dict[str, float]) -> dict[str, dict]:
    """{far key: {threshold, tar, far}}: TAR = #{genuine >= t} / #genuine, the achieved FAR on the impostors."""
    g = np.asarray(genuine_scores, dtype=np.float64)
    imp = np.asarray(impostor_scores, dtype=np.float64)
    return {
        key: {"threshold": t, "tar": float(np.mean(g >= t)) if g.size else math.nan, "far": float(np.mean(imp >= t))}
        for key, t in thresholds.items()
    }


def check_threshold(threshold, what: str = "--threshold") -> float:
    """A cosine threshold as a float in [-1, 1]; ConfigError naming `what` for NaN, inf or anything outside."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {threshold!r} is not a number; give a cosine in [-1, 1], e.g. 0.3.") from None
    if not -1.0 <= t <= 1.0:  # also refuses NaN
        raise ConfigError(
            f"{what} {threshold!r}: a cosine similarity threshold must be a finite number in [-1, 1] "
            "(-1 accepts every pair, 1 only identical embeddings), e.g. 0.3."
        )
    return t


def calibrated_path(model) -> Path:
    """Where `facezoo calibrate MODEL` writes by default: MODEL_calibrated.<ext> beside a file, or in the current
    folder for a pretrained model name."""
    from ..models.zoo import is_name, resolve

    path = resolve(model)
    name = f"{path.stem}_calibrated{path.suffix}"
    return Path(name) if is_name(model) else path.with_name(name)


def operating_point(model_thresholds: dict, far=None, threshold=None, overrides: dict | None = None, model=None):
    """The decision rule verify / identify use: {"threshold": cosine, "far": target (FAR-based only), "source"}.

    threshold given: that cosine (source "--threshold", the CLI option; threshold= in the API). far given: the
    threshold calibrated for it, `overrides` ({far key: cosine}) before `model_thresholds` (source "calibrated").
    Neither: the model's default operating point: its lowest calibrated FAR, else its DEFAULT_KEY threshold
    (source "model default"). Without one, a ConfigError saying how to get one; `model` (the path or name the
    user gave) makes that advice a command to paste.
    """
    overrides = overrides or {}
    if threshold is not None:
        return {"threshold": check_threshold(threshold), "source": "--threshold"}
    table = {k: float(v) for k, v in model_thresholds.items()}
    table.update({k: float(v) for k, v in overrides.items()})
    calibrated = sorted((k for k in table if k != DEFAULT_KEY), key=float)
    where = str(model) if model is not None else "MODEL"
    try:
        out = str(calibrated_path(model)) if model is not None else "MODEL_calibrated.pt"
    except FacezooError:
        out = "MODEL_calibrated.pt"
    calibrate_cmd = f"`facezoo calibrate {where} --bin PAIRS.bin [--folder CROPS/]`"
    if far is not None:
        f = check_far(far, "--far")
        key = far_key(f)
        if key in table:
            return {"far": f, "threshold": table[key], "source": "calibrated"}
        have = f"calibrated FARs: {', '.join(calibrated)}" if calibrated else "the model has no calibrated thresholds"
        raise ConfigError(
            f"no threshold for FAR {key} ({have}). Calibrate it: {calibrate_cmd[:-1]} --far {key}` (needs at "
            f"least {min_impostors(f)} impostor pairs; a --folder of crops gives every cross-person pair) and use "
            f"--model {out}; or leave out --far to use the model's default operating point, or give --threshold T "
            "(API: far=, threshold=)."
        )
    if calibrated:
        return {"far": float(calibrated[0]), "threshold": table[calibrated[0]], "source": "calibrated"}
    if DEFAULT_KEY in table:
        return {"threshold": table[DEFAULT_KEY], "source": "model default"}
    raise ConfigError(
        f"{where} has no operating point: no calibrated thresholds and no default threshold. Calibrate it on pairs "
        f"of faces: {calibrate_cmd} writes {out} with a threshold per FAR the pairs can measure; then use --model "
        f"{out}. Or give --threshold T, a cosine in [-1, 1] (API: threshold=T)."
    )


# ---------------------------------------------------------------------- scores from pair sources


def _embed_normed(recognizer, images: np.ndarray, flip: bool, desc: str = "calibrate") -> np.ndarray:
    """L2-normalised float64 (N, D) embeddings (flip: of e(x) + e(flip x)), batch by batch with a progress bar;
    DataError when the model gives non-finite values."""
    step = max(1, int(getattr(recognizer, "batch_size", 64)))
    parts = []
    with bar(len(images), desc, "img") as pbar:
        for s in range(0, len(images), step):
            chunk = images[s : s + step]
            e = recognizer(chunk).astype(np.float64)
            if flip:
                e = e + recognizer(np.ascontiguousarray(chunk[:, :, ::-1])).astype(np.float64)
            parts.append(e)
            pbar.update(len(chunk))
    e = np.concatenate(parts) if parts else np.zeros((0, recognizer.embedding_size))
    bad = int((~np.isfinite(e).all(axis=1)).sum())
    if bad:
        raise DataError(f"the model produced non-finite embeddings for {bad} of {len(e)} images; check the model.")
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(n, 1e-12)


def bin_scores(recognizer, bin_path, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of the listed pairs of an InsightFace .bin set."""
    from ..data.verification_bin import load_bin_images

    images, issame = load_bin_images(bin_path, image_size=tuple(recognizer.input_size))
    e = _embed_normed(recognizer, images, flip, f"calibrate {Path(bin_path).name}")
    scores = np.sum(e[0::2] * e[1::2], axis=1)
    return scores[issame], scores[~issame]


def folder_scores(recognizer, root, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of ALL pairs of aligned crops in root/<identity>/<image>.

    Pairs within an identity are genuine, pairs across identities impostors: m crops give m(m-1)/2 pairs, so a
    few hundred crops reach FARs that listed pairs cannot. Crops are resized to the model's input size.
    """
    from ..data.folders import is_image_file
    from ..data.image import read_image_file, resize_image

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder. Pass a folder with one sub-folder of aligned crops per person.")
    paths, labels = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))):
        for p in sorted(folder.iterdir()):
            if p.is_file() and is_image_file(p):
                paths.append(p)
                labels.append(label)
    if len(set(labels)) < 2:
        raise DataError(f"{root}: needs at least two identity sub-folders with images (root/<name>/<crop>).")
    size = tuple(recognizer.input_size)
    images = np.stack([resize_image(read_image_file(p), size) for p in paths])
    e = _embed_normed(recognizer, images, flip, f"calibrate {root.name}/")
    sims = e @ e.T
    lab = np.asarray(labels)
    iu = np.triu_indices(len(lab), k=1)
    same = lab[iu[0]] == lab[iu[1]]
    scores = sims[iu]
    return scores[same], scores[~same]


def calibrate(recognizer, bins=(), folders=(), fars=None, flip: bool = False) -> dict:
    """Thresholds of a recognizer from pair sources: InsightFace .bin files (listed pairs) and/or folders of
    aligned crops (all pairs). Impostor scores of all sources are pooled.

    fars None: those of DEFAULT_FARS the impostor count supports. Returns {thresholds {far key: t}, report
    {far key: {threshold, tar, far}}, genuine, impostors, score (what was compared), sources}.
    """
    from ..models.loader import load_model

    recognizer = load_model(recognizer)
    bins, folders = list(bins), list(folders)
    if not bins and not folders:
        raise ConfigError("nothing to calibrate on: give .bin pair sets (--bin) and/or folders of crops (--folder).")
    gen, imp = [], []
    for source in itertools.chain(((bin_scores, b) for b in bins), ((folder_scores, f) for f in folders)):
        g, i = source[0](recognizer, source[1], flip)
        gen.append(g)
        imp.append(i)
    genuine, impostor = np.concatenate(gen), np.concatenate(imp)
    if fars is None:
        fars = supported_fars(impostor.size)
        if not fars:
            raise ConfigError(
                f"only {impostor.size} impostor pairs: even FAR {DEFAULT_FARS[0]:g} needs "
                f"{min_impostors(DEFAULT_FARS[0])}; add pair sets."
            )
    thresholds = calibrate_thresholds(impostor, fars)
    view = "e(x) + e(flip(x))" if flip else "e(x), single view"
    return {
        "thresholds": thresholds,
        "report": threshold_report(genuine, impostor, thresholds),
        "genuine": int(genuine.size),
        "impostors": int(impostor.size),
        "score": f"cosine of L2-normalised embeddings, {view}",
        "sources": [str(b) for b in bins] + [str(f) for f in folders],
    }


# ---------------------------------------------------------------------- writing thresholds into a model


def write_thresholds(model, thresholds: dict[str, float], out) -> Path:
    """Copy `model` (.pt or .onnx) to `out` (atomically) with its thresholds set.

    .pt: meta.thresholds of the checkpoint (everything else kept). .onnx: the metadata key "facezoo.thresholds"
    (JSON), and meta.thresholds inside "facezoo.meta" when the file is a facezoo export; weights untouched.
    """
    import torch

    model, out = Path(model), Path(out)
    thresholds = {str(k): float(v) for k, v in thresholds.items()}
    if model.suffix.lower() == ".onnx":
        from ..models.runtimes.ort import META_KEY, THRESHOLDS_KEY, require

        onnx = require("onnx")
        try:
            proto = onnx.load(str(model))
        except Exception as e:
            raise ModelError(f"{model}: not a readable ONNX model ({type(e).__name__}: {str(e)[:200]}).") from None
        props = {p.key: p.value for p in proto.metadata_props}
        if META_KEY in props:
            meta = json.loads(props[META_KEY])
            meta["thresholds"] = thresholds
            props[META_KEY] = json.dumps(meta)
        props[THRESHOLDS_KEY] = json.dumps(thresholds)
        del proto.metadata_props[:]
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        with atomic_write(out) as f:
            f.write(proto.SerializeToString())
        return out
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model)
    ckpt["meta"] = {**ckpt["meta"], "thresholds": thresholds}
    with atomic_write(out) as f:
        torch.save(ckpt, f)
    return out
