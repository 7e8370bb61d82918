"""Verification on .bin sets during training: images decoded once, then embedded with flip at each check."""

from __future__ import annotations

import torch


class Verifier:
    def __init__(self, paths: list[str], input_size: tuple[int, int], batch_size: int = 256):
        from ..eval.verification import bin_sets

        self.sets = {name: load(tuple(input_size)) for name, load in bin_sets(paths).items()}
        self.batch_size = batch_size

    def __call__(self, embedder, device) -> dict[str, dict]:
        """{set name: verification metrics} for `embedder` (switched to eval mode for the check, then back)."""
        from ..eval.verification import evaluate_pairs

        was_training = embedder.training
        embedder.eval()
        try:
            with torch.no_grad():
                return {
                    name: evaluate_pairs(embedder, images, issame, batch_size=self.batch_size, device=device)
                    for name, (images, issame) in self.sets.items()
                }
        finally:
            embedder.train(was_training)
