"""Verification on .bin sets during training (data.val), with the best step so far kept as best.pt."""

from __future__ import annotations

import json

import torch

from ...io import atomic_write
from .base import Callback


class Verifier:
    """The .bin sets decoded once; each call embeds them with flip and returns {set: verification metrics}. Both
    show a progress bar on a terminal (facezoo.progress), so a long validation is never silent."""

    def __init__(self, paths: list[str], input_size: tuple[int, int], batch_size: int = 256):
        from ...eval.verification import bin_sets

        self.sets = {name: load(tuple(input_size)) for name, load in bin_sets(paths).items()}
        self.batch_size = batch_size

    def __call__(self, embedder, device) -> dict[str, dict]:
        from ...eval.verification import evaluate_pairs

        was_training = embedder.training
        embedder.eval()
        try:
            with torch.no_grad():
                return {
                    name: evaluate_pairs(
                        embedder, images, issame, self.batch_size, device, progress=True, desc=f"verification {name}"
                    )
                    for name, (images, issame) in self.sets.items()
                }
        finally:
            embedder.train(was_training)


class Verification(Callback):
    """Runs the verifier every val_every steps (0: each epoch end) and at the last step, then emits on_validation.

    Best so far: the mean accuracy over the sets; a new best writes OUTPUT/best.pt (a model file like model.pt)
    and OUTPUT/best.json {step, score, sets}; `trainer.best` holds it for the progress line.
    """

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self.verifier: Verifier | None = None

    def on_train_start(self, trainer):
        if self.verifier is None:
            self.verifier = Verifier(self.paths, trainer.meta.input_size)
        best = trainer.output / "best.json"
        if trainer.step and best.exists() and getattr(trainer, "best", None) is None:
            saved = json.loads(best.read_text())
            trainer.best = saved if saved.get("step", 0) <= trainer.step else None

    def on_step_end(self, trainer, step):
        every = trainer.cfg.val_every or trainer.steps_per_epoch
        if step % every == 0 or step == trainer.stop_step:
            results = self.verifier(trainer.embedder(), trainer.device)
            self._update_best(trainer, step, results)  # first, so every on_validation listener sees this step
            trainer.events.emit("on_validation", trainer, step, results)

    def _update_best(self, trainer, step, results):
        score = sum(r["accuracy"] for r in results.values()) / max(len(results), 1)
        best = getattr(trainer, "best", None)
        if best is None or score > best["score"]:
            trainer.best = {"step": step, "score": score, "sets": {k: r["accuracy"] for k, r in results.items()}}
            trainer.save_model(trainer.output / "best.pt")
            with atomic_write(trainer.output / "best.json", "w") as f:
                json.dump(trainer.best, f, indent=1)
