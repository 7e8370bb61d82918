"""IJB-C scoring time from template features, at the real sizes, on synthetic features.

Pooling: 469,375 image features (--images) in 23,124 templates of ~10 media each: `template_features` (pure
numpy; tests/eval/test_ijb.py checks it against the torch index_add_ pooling it replaced, bit for bit).
1:1: 23,124 templates (512-d, float32, L2-normalised), 15,658,489 template pairs (19,557 genuine) with the
release's shape: first templates from the 3,531 gallery templates, pairs sorted by the first template. Times
`verify_scores` (numpy BLAS, Gram slices) and `roc_summary` (ROC + TAR at 1e-6 ... 1e-1); with torch, the same
scores as a blockwise gather-and-dot in torch where CUDA is present (on the CPU with --torch-cpu).
1:N: galleries G1 = 1,772 and G2 = 1,759 templates, 19,593 probe templates: `evaluate_1n` (both galleries).

    python benchmarks/ijb_bench.py [--dim 512] [--pairs 15658489] [--images 469375] [--repeat 1]
    python benchmarks/ijb_bench.py --pairs 200000 --images 20000 --probes 2000 --gallery 300 300   # a dry run

Prints a markdown table; add it to benchmarks/RESULTS.md with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def synthetic(args, rng):
    """Template features with subject structure, the 1:1 pair list and the 1:N sets (IJB-C sizes)."""
    n_gallery = args.gallery[0] + args.gallery[1]
    n_templates = n_gallery + args.probes
    subjects = np.arange(n_gallery)
    probe_subject = rng.integers(0, n_gallery, args.probes)
    centres = rng.standard_normal((n_gallery, args.dim), dtype=np.float32)
    feats = np.empty((n_templates, args.dim), np.float32)
    feats[:n_gallery] = centres + rng.standard_normal((n_gallery, args.dim), dtype=np.float32)
    feats[n_gallery:] = centres[probe_subject] + 3 * rng.standard_normal((args.probes, args.dim), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    tids = np.arange(n_templates, dtype=np.int64) + 1  # sorted unique ids, one per row
    # 1:1: each probe template against its subject's gallery template (genuine) and random other ones.
    n_gen = min(args.genuine, args.probes)
    gen_probe = rng.choice(args.probes, n_gen, replace=False)
    t1 = np.concatenate([subjects[probe_subject[gen_probe]], rng.integers(0, n_gallery, args.pairs - n_gen)])
    t2 = np.concatenate([n_gallery + gen_probe, n_gallery + rng.integers(0, args.probes, args.pairs - n_gen)])
    same = t1[n_gen:] == probe_subject[t2[n_gen:] - n_gallery]  # random pairs that happen to match: move them
    t1[n_gen:][same] = (t1[n_gen:][same] + 1) % n_gallery
    labels = np.zeros(args.pairs, np.int64)
    labels[:n_gen] = 1
    order = np.argsort(t1, kind="stable")  # the release lists pairs grouped by the first template
    return feats, tids, tids[t1[order]], tids[t2[order]], labels[order], subjects, probe_subject


def sets_1n(tids, args, subjects, probe_subject):
    from facezoo.eval.ijb_meta import IJB1N, TemplateSubjects

    g1 = args.gallery[0]
    n_gallery = args.gallery[0] + args.gallery[1]
    return IJB1N(
        {"G1": TemplateSubjects(tids[:g1], subjects[:g1]), "G2": TemplateSubjects(tids[g1:n_gallery], subjects[g1:])},
        TemplateSubjects(tids[n_gallery:], subjects[probe_subject]),
        {"G1": Path("G1.csv"), "G2": Path("G2.csv"), "probe": Path("probe.csv")},
    )


def torch_scores(feats, tids, t1, t2, device, block=1 << 16):
    """<f[t1], f[t2]> by gather-and-dot in torch, `block` pairs at a time (ids are row + 1 here)."""
    import torch

    f = torch.from_numpy(feats).to(device)
    r1 = torch.from_numpy(t1 - 1).to(device)
    r2 = torch.from_numpy(t2 - 1).to(device)
    out = torch.empty(t1.shape[0], dtype=f.dtype, device=device)
    for a in range(0, t1.shape[0], block):
        out[a : a + block] = (f[r1[a : a + block]] * f[r2[a : a + block]]).sum(1)
    return out.cpu().numpy()


def synthetic_images(args, n_templates, rng):
    """Image features (N, dim) float32 with a template and a media id each: ~10 media per template, IJB-like."""
    templates = rng.integers(0, n_templates, args.images)
    medias = templates * 16 + rng.integers(0, 10, args.images)
    feats = rng.standard_normal((args.images, args.dim), dtype=np.float32)
    return feats, templates, medias


def timed(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--pairs", type=int, default=15_658_489)
    p.add_argument("--genuine", type=int, default=19_557)
    p.add_argument("--gallery", type=int, nargs=2, default=(1772, 1759), metavar=("G1", "G2"))
    p.add_argument("--probes", type=int, default=19_593)
    p.add_argument("--images", type=int, default=469_375, help="image features pooled into the templates")
    p.add_argument("--repeat", type=int, default=1, help="best of N runs")
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="template feature dtype (float64: what template_features returns, so what eval-ijb scores)",
    )
    p.add_argument(
        "--torch-cpu",
        action="store_true",
        help="also time torch's gather-and-dot on the CPU (slow: it moves every pair's two rows)",
    )
    args = p.parse_args(argv)

    from facezoo.eval.ijb import IJB_FARS, evaluate_1n, template_features, verify_scores
    from facezoo.eval.scoring import roc_summary

    rng = np.random.default_rng(0)
    feats, tids, t1, t2, labels, subjects, probe_subject = synthetic(args, rng)
    feats = feats.astype(args.dtype)
    rows = []
    img, img_t, img_m = synthetic_images(args, feats.shape[0], rng)
    size_pool = f"{args.images:,} images, {feats.shape[0]:,} templates, {args.dim}-d"
    t_pool, _ = timed(lambda: template_features(img, img_t, img_m), args.repeat)
    rows.append(("pooling template_features (numpy)", size_pool, t_pool))
    img = None  # free the image features before the 1:1 part
    size_11 = f"{feats.shape[0]:,} templates, {t1.shape[0]:,} pairs ({int(labels.sum()):,} genuine), {args.dim}-d"
    t_score, scores = timed(lambda: verify_scores(feats, tids, t1, t2), args.repeat)
    rows.append((f"1:1 verify_scores (numpy, {args.dtype})", size_11, t_score))
    t_roc, r = timed(lambda: roc_summary(labels, scores, IJB_FARS), args.repeat)
    rows.append(("1:1 roc_summary (ROC + TAR at 6 FARs)", size_11, t_roc))
    rows.append(("1:1 total", size_11, t_score + t_roc))
    import torch

    devices = (["cpu"] if args.torch_cpu else []) + (["cuda"] if torch.cuda.is_available() else [])
    if devices:
        for dev in devices:
            if dev == "cuda":
                torch_scores(feats, tids, t1[:1000], t2[:1000], dev)  # warm-up: context, kernels
            t, s = timed(lambda dev=dev: torch_scores(feats, tids, t1, t2, dev), args.repeat)
            assert np.allclose(s, scores, atol=1e-5), "torch and numpy scores differ"
            name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
            rows.append((f"1:1 scores, torch gather-and-dot on {name} ({args.dtype})", size_11, t))
    sets = sets_1n(tids, args, subjects, probe_subject)
    size_1n = f"G1 {args.gallery[0]:,} + G2 {args.gallery[1]:,} gallery, {args.probes:,} probe templates, {args.dim}-d"
    t_1n, r1n = timed(lambda: evaluate_1n(feats, tids, sets), args.repeat)
    rows.append(("1:N evaluate_1n (both galleries, CMC + TPIR@FPIR; float64)", size_1n, t_1n))

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
        f"OMP_NUM_THREADS={threads}"
    )
    print("| step | size | seconds |")
    print("|---|---|---|")
    for name, size, t in rows:
        print(f"| {name} | {size} | {t:.2f} |")
    tar = {k: v["tar"] if v["tar"] is None else round(v["tar"], 4) for k, v in r["tar_at_far"].items()}
    print(f"\nsanity: TAR {tar}; 1:N rank-1 {r1n['cmc'][1]:.4f}, TPIR@1e-2 {r1n['tpir_at_fpir']['1e-02']['tpir']}")


if __name__ == "__main__":
    main()
