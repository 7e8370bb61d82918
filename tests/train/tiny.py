"""Shared by the training-mode tests: a very small backbone, a Trainer built from overrides, gloo ranks."""

from __future__ import annotations

import os
import socket
import time

import torch

from facezoo.config import load_config
from facezoo.train.trainer import Trainer

from .conftest import TINY_RUN

# TINY_RUN with a one-block-per-stage IR-18 at 1/8 width on 16x16 inputs: ~80k parameters, milliseconds per step
TINY = [
    *TINY_RUN,
    "model.input_size=16",
    "model.embedding_size=16",
    "model.kwargs={width: 0.125, layers: [1, 1, 1, 1]}",
]


def trainer(out, *overrides, dataset=None, verbose=True) -> Trainer:
    return Trainer(load_config(None, [*TINY, f"output={out}", *overrides]), dataset=dataset, verbose=verbose)


def losses(history, key="train/loss") -> list[float]:
    return [row[key] for row in history if key in row]


def spawn(fn, world_size: int, *args, timeout: float = 300.0) -> None:
    """Run fn(rank, world_size, *args) in world_size gloo processes, torchrun's environment set; a rank that hangs
    (a collective some rank skipped) fails the test after `timeout` seconds instead of blocking it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.start_processes(
        _entry, args=(world_size, port, fn, args), nprocs=world_size, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.terminate()
            raise TimeoutError(f"gloo ranks still running after {timeout} s")


def _entry(rank, world_size, port, fn, args):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    fn(rank, world_size, *args)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)  # see test_classifier: skip gloo's occasionally aborting interpreter teardown
