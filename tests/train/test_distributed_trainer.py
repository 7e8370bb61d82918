"""torchrun-style training on gloo ranks; checkpoints independent of the world size."""

import os
import socket

import numpy as np
import torch

from facezoo.config import load_config
from facezoo.train.trainer import Trainer

from .conftest import TINY_RUN, TinyFaces


def overrides(out):
    return [f"output={out}", *TINY_RUN, "batch_size=8", "epochs=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world_size, port, out, max_steps, resume, report):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    t = Trainer(load_config(None, overrides(out)), dataset=TinyFaces(classes=7))
    if resume:
        t.resume(resume)
        torch.save(
            {
                "weight": t.mode.head.weight.detach().clone(),
                "start": t.mode.classifier.start,
                "momentum": t.optimizer.state[t.mode.head.weight]["momentum_buffer"].clone(),
            },
            f"{report}{rank}.pt",
        )
    history = t.fit(max_steps=max_steps)
    if rank == 0:
        torch.save([row["train/loss"] for row in history if "train/loss" in row], f"{report}losses.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)  # see test_classifier: skip gloo's occasionally aborting interpreter teardown


def run(world_size, out, max_steps=None, resume=None, report=None):
    report = report or f"{out}/report"
    torch.multiprocessing.spawn(
        _rank, args=(world_size, _free_port(), str(out), max_steps, resume, report), nprocs=world_size
    )
    return torch.load(f"{report}losses.pt")


def test_train_on_two_ranks_resume_on_one_and_three(tmp_path):
    losses = run(2, tmp_path / "a", max_steps=4)  # 56 images / (8 x 2) = 3 steps per epoch
    assert len(losses) == 4 and all(np.isfinite(losses))
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    full = ckpt["train"]["mode_state"]["head"]["state"]["weight"]
    assert full.shape == (7, 32) and ckpt["train"]["world_size"] == 2
    index = next(i for i, s in ckpt["train"]["optimizer"]["state"].items() if s["momentum_buffer"].shape == (7, 32))
    momentum = ckpt["train"]["optimizer"]["state"][index]["momentum_buffer"]

    # resume the 2-rank run on 3 ranks: every rank holds its rows of the saved centres and momentum
    run(3, tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint.pt"), report=f"{tmp_path}/r3_")
    for rank, rows in enumerate([(0, 3), (3, 5), (5, 7)]):
        got = torch.load(f"{tmp_path}/r3_{rank}.pt")
        assert got["start"] == rows[0]
        assert torch.equal(got["weight"], full[rows[0] : rows[1]])
        assert torch.equal(got["momentum"], momentum[rows[0] : rows[1]])

    # and on one process (no process group): the full head, then training goes on to the end
    os.environ.pop("WORLD_SIZE", None)
    t = Trainer(load_config(None, overrides(tmp_path / "c")), dataset=TinyFaces(classes=7))
    t.resume(tmp_path / "a" / "checkpoint.pt")
    assert torch.equal(t.mode.head.weight.detach(), full)
    assert torch.equal(t.optimizer.state[t.mode.head.weight]["momentum_buffer"], momentum)
    assert t.steps_per_epoch == 7 and t.step == 4
    rest = [row["train/loss"] for row in t.fit() if "train/loss" in row]
    assert len(rest) == 10 and all(np.isfinite(rest))
