"""OUTPUT/curves.png: training loss and verification accuracy against the step, redrawn at the end of fit()."""

from __future__ import annotations

from .base import Callback
from .metrics import MetricsFile


class CurvesPlot(Callback):
    def on_train_end(self, trainer):
        metrics = trainer.events.find(MetricsFile)
        rows = metrics.history if metrics else []
        loss = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
        sets = sorted({k for r in rows for k in r if k.startswith("val/")})
        if not loss:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ...io import atomic_write

        fig, axes = plt.subplots(1, 2 if sets else 1, figsize=(10 if sets else 5, 3.5), squeeze=False)
        ax = axes[0][0]
        ax.plot(*zip(*loss))
        ax.set(xlabel="step", ylabel="loss", title="training loss")
        if sets:
            ax = axes[0][1]
            for key in sets:
                points = [(r["step"], 100 * r[key]) for r in rows if key in r]
                ax.plot(*zip(*points), marker="o", label=key[4:])
            ax.set(xlabel="step", ylabel="accuracy (%)", title="verification")
            ax.legend()
        fig.tight_layout()
        with atomic_write(trainer.output / "curves.png") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
