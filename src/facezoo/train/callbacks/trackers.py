"""Optional experiment trackers named in a recipe's `callbacks:` list: wandb and mlflow (when installed).

Both receive the resolved config once, the logged training scalars, and the verification accuracies. A tracker
that is named but not installed is a ConfigError with the install command (never a silent no-op).
"""

from __future__ import annotations

import importlib

from ...errors import ConfigError
from . import CALLBACKS
from .base import Callback


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"callbacks: '{module}' is not installed; pip install {package} (or remove it from callbacks)"
        ) from None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@CALLBACKS.register("wandb")
class WandbTracker(Callback):
    """Weights & Biases: one run per training output folder (its name), offline unless WANDB_MODE says otherwise."""

    def __init__(self):
        self.wandb = _require("wandb", "wandb")
        self.run = None

    def on_train_start(self, trainer):
        if self.run is None:
            self.run = self.wandb.init(
                project="facezoo", name=trainer.output.name, dir=str(trainer.output), config=trainer.cfg.to_dict()
            )

    def on_log(self, trainer, step, values):
        self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def on_validation(self, trainer, step, results):
        self.run.log({f"val/{k}": r["accuracy"] for k, r in results.items()}, step=step)

    def on_train_end(self, trainer):
        self.run.finish()
        self.run = None


@CALLBACKS.register("mlflow")
class MlflowTracker(Callback):
    """MLflow: a run named after the output folder, the flattened config as params, scalars as metrics."""

    def __init__(self):
        self.mlflow = _require("mlflow", "mlflow")
        self.active = False

    def on_train_start(self, trainer):
        if not self.active:
            self.mlflow.start_run(run_name=trainer.output.name)
            params = {k: str(v)[:250] for k, v in _flat(trainer.cfg.to_dict()).items()}
            self.mlflow.log_params(params)
            self.active = True

    def on_log(self, trainer, step, values):
        self.mlflow.log_metrics({f"train/{k}": v for k, v in values.items()}, step=step)

    def on_validation(self, trainer, step, results):
        self.mlflow.log_metrics({f"val/{k}": r["accuracy"] for k, r in results.items()}, step=step)

    def on_train_end(self, trainer):
        self.mlflow.end_run()
        self.active = False
