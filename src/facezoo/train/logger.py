"""Progress lines (images/s, loss, lr, ETA), TensorBoard scalars and a metrics.jsonl history."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path


class RunLogger:
    def __init__(self, output: Path, total_steps: int, tensorboard: bool = True, enabled: bool = True):
        self.output, self.total_steps, self.enabled = Path(output), total_steps, enabled
        self.history: list[dict] = []
        self._writer = None
        self._tb = tensorboard and enabled
        self._t0, self._step0 = time.perf_counter(), None

    def _tensorboard(self):
        if self._writer is None and self._tb:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.output / "tb"))
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)", stacklevel=2
                )
                self._tb = False
        return self._writer

    def start(self, step: int) -> None:
        self._t0, self._step0 = time.perf_counter(), step

    def scalars(self, step: int, values: dict, prefix: str = "train") -> None:
        """Record values (python floats) at `step`: history, metrics.jsonl, TensorBoard."""
        if not self.enabled:
            return
        row = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        self.history.append(row)
        with open(self.output / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(f"{prefix}/{k}", v, step)

    def progress(self, step: int, epoch: int, epochs: int, loss: float, lr: float, images_per_step: int, **extra):
        """One line: where we are, loss, lr, throughput since start() and the time left."""
        elapsed = time.perf_counter() - self._t0
        done = step - (self._step0 or 0)
        ips = done * images_per_step / max(elapsed, 1e-9)
        eta = (self.total_steps - step) * elapsed / max(done, 1)
        h, rem = divmod(int(eta), 3600)
        tail = "".join(f" {k} {v}" for k, v in extra.items())
        self.print(
            f"epoch {epoch + 1}/{epochs} step {step}/{self.total_steps} loss {loss:.4f} lr {lr:.5f} "
            f"{ips:,.0f} img/s eta {h}:{rem // 60:02d}:{rem % 60:02d}{tail}"
        )
        self.scalars(step, {"loss": loss, "lr": lr, "images_per_s": ips})

    def print(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
