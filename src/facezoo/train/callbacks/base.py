"""The event interface: a Callback implements the hooks it needs; Events calls them in order."""

from __future__ import annotations


class Callback:
    """Hooks, all optional. `trainer` is the running Trainer; `step` counts optimiser steps done.

    on_train_start(trainer)               before the first step of this fit() (after any resume)
    on_log(trainer, step, values)         every log_every steps: {"loss", "lr", "images_per_s", ...} floats
    on_step_end(trainer, step)            after every optimiser step (keep it cheap: no host syncs)
    on_validation(trainer, step, results) {set name: verification metrics} after a verification run
    on_checkpoint(trainer, step, path)    after checkpoint.pt and model.pt are written
    on_epoch_end(trainer, epoch)          after the last step of an epoch (epoch counts from 0)
    on_train_end(trainer)                 after the last step of this fit()
    """

    def on_train_start(self, trainer) -> None: ...
    def on_log(self, trainer, step: int, values: dict) -> None: ...
    def on_step_end(self, trainer, step: int) -> None: ...
    def on_validation(self, trainer, step: int, results: dict) -> None: ...
    def on_checkpoint(self, trainer, step: int, path) -> None: ...
    def on_epoch_end(self, trainer, epoch: int) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class Events:
    """Calls one hook on every callback, in the order given."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = list(callbacks)

    def emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def find(self, kind: type):
        """The first callback of type `kind`, or None."""
        return next((c for c in self.callbacks if isinstance(c, kind)), None)
