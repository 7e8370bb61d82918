"""metrics.jsonl and the in-memory history fit() returns: one row per logged step or verification."""

from __future__ import annotations

import json

from ...io import atomic_write
from .base import Callback


class MetricsFile(Callback):
    """Rows {"step": s, "train/loss": ..., "val/<set>": ...} appended to OUTPUT/metrics.jsonl and kept in `history`.

    At the start, rows after the current step are dropped (on a resume: what the interrupted run logged after its
    checkpoint; on a new run in the same folder: everything), so every step appears once.
    """

    def __init__(self):
        self.history: list[dict] = []

    def on_train_start(self, trainer) -> None:
        self.path = trainer.output / "metrics.jsonl"
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if isinstance(row, dict) and row.get("step", 0) <= trainer.step:
                    kept.append(line)
            with atomic_write(self.path, "w") as f:
                f.write("".join(f"{line}\n" for line in kept))

    def record(self, step: int, values: dict, prefix: str) -> None:
        row = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        self.history.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_log(self, trainer, step, values):
        self.record(step, values, "train")

    def on_validation(self, trainer, step, results):
        self.record(step, {name: r["accuracy"] for name, r in results.items()}, "val")
