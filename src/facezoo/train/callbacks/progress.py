"""The progress line on stdout and OUTPUT/train.log (the same lines, each with a timestamp)."""

from __future__ import annotations

import sys
import time
from datetime import datetime

from .base import Callback


class ProgressLog(Callback):
    """`epoch e/E step s/S loss l lr r N img/s eta h:mm:ss`; verification and checkpoint lines; train.log.

    The ETA counts to the step this fit() stops at (max_steps included), from the rate since it started.
    """

    def __init__(self, stream=None):
        self.stream = stream
        self._t0, self._step0 = time.perf_counter(), 0
        self._log = None

    def print(self, trainer, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)
        if self._log is None:
            self._log = open(trainer.output / "train.log", "a")  # noqa: SIM115 (open for the whole run)
        self._log.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
        self._log.flush()

    def on_train_start(self, trainer):
        self._t0, self._step0 = time.perf_counter(), trainer.step
        for line in trainer.plan():
            self.print(trainer, line)

    def on_log(self, trainer, step, values):
        done = max(step - self._step0, 1)
        eta = (trainer.stop_step - step) * (time.perf_counter() - self._t0) / done
        h, rem = divmod(int(eta), 3600)
        epoch = min(step - 1, trainer.total_steps - 1) // trainer.steps_per_epoch
        extra = "".join(
            f" {k} {v:.4f}" if isinstance(v, float) else f" {k} {v}"
            for k, v in values.items()
            if k not in ("loss", "lr", "images_per_s")
        )
        self.print(
            trainer,
            f"epoch {epoch + 1}/{trainer.cfg.epochs} step {step}/{trainer.stop_step} loss {values['loss']:.4f} "
            f"lr {values['lr']:.5f} {values['images_per_s']:,.0f} img/s eta {h}:{rem // 60:02d}:{rem % 60:02d}{extra}",
        )

    def on_validation(self, trainer, step, results):
        line = " ".join(f"{name} {r['accuracy'] * 100:.2f}%" for name, r in results.items())
        best = getattr(trainer, "best", None)
        tail = f" (best mean {best['score'] * 100:.2f}% at step {best['step']})" if best else ""
        self.print(trainer, f"verification at step {step}: {line}{tail}")

    def on_train_end(self, trainer):
        self.print(trainer, f"model: {trainer.output / 'model.pt'}  resumable checkpoint: {trainer.checkpoint_path}")
        if self._log is not None:
            self._log.close()
            self._log = None
