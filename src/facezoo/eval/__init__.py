"""Evaluation protocols and runs.

`run` (1:1 verification on .bin files, pair lists, sets files), `run_ijb` (IJB-B / IJB-C) and `run_megaface` evaluate
several models in one call and return a `Report`; `verification_metrics` is the InsightFace 1:1 verification
protocol on embeddings. The modules: scoring (ROC, TAR@FAR, 1:N search, CMC), metrics (k-fold verification),
verification / sets / pairs (pair sets), ijb_meta / ijb / ijb_images, megaface / megaface_data, features (cache),
runner, report.
"""

from .metrics import verification_metrics
from .report import Report
from .runner import run, run_ijb, run_megaface

__all__ = ["Report", "run", "run_ijb", "run_megaface", "verification_metrics"]
