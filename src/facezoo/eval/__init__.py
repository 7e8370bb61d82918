"""Evaluation protocols. `verification_metrics` is the InsightFace 1:1 verification protocol on embeddings."""

from .metrics import verification_metrics

__all__ = ["verification_metrics"]
