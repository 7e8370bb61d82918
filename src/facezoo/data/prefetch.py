"""Overlap the host-to-device copy (and an optional GPU transform such as GpuJpegDecoder) with compute.

On CUDA, batch k+1 is staged on a side stream while the consumer computes on batch k:
- stage (side stream): "images"/"labels" copied with non_blocking=True. From pinned memory (DataLoader
  pin_memory=True) the copy is asynchronous; from pageable memory it is still correct, only synchronous. The
  pinned host block is not reused before the copy ends: PyTorch's caching host allocator records an event on
  the copying stream when a pinned tensor takes part in a non_blocking copy.
- hand over (consumer's current stream): current.wait_stream(side) orders every kernel queued afterwards on
  the consumer's stream after the staged work; t.record_stream(current) for each staged CUDA tensor stops the
  caching allocator from giving its memory to the side stream again before the consumer's work on it is done
  (the memory was allocated on `side`, the allocator would otherwise only track `side`).
- one batch in flight: batch k+1 is staged right after batch k is handed over, before k is yielded.
On any other device the prefetcher is a pass-through that moves nothing (the optional transform still runs).

Reasoned, not run (no GPU where this was written): the CUDA stream behaviour above. The ordering logic itself
(`_one_ahead`) is shared and tested on CPU with recording stage/hand-over functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

MOVED = ("images", "labels")


def _one_ahead(batches: Iterator, stage: Callable, hand_over: Callable) -> Iterator:
    """Yield hand_over(stage(b)) for each b, with stage() of the next batch issued before the current is yielded.

    An exception raised while fetching batch k+1 (a DataLoader worker's error) is re-raised after batch k is
    yielded, when the consumer asks for k+1, as without the prefetcher.
    """
    try:
        staged = stage(next(batches))
    except StopIteration:
        return
    while True:
        current = hand_over(staged)
        error = None
        try:
            staged = stage(next(batches))
        except StopIteration:
            staged = None
        except Exception as e:  # re-raised below, after batch k
            error, staged = e, None
        yield current
        if error is not None:
            raise error
        if staged is None:
            return


class DevicePrefetcher:
    """Iterate a loader of batch dicts; each yielded dict has "images" and "labels" on `device` (other keys as
    they were). transform(batch) -> batch, e.g. GpuJpegDecoder, runs on the side stream after the copy.

    len() is the loader's. Iterating again starts a new pass over the loader (a new DataLoader iterator).
    """

    def __init__(self, loader: Iterable, device, transform: Callable[[dict], dict] | None = None):
        self.loader = loader
        self.device = torch.device(device)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self.transform(batch) if self.transform is not None else batch
            return
        yield from _one_ahead(iter(self.loader), *self._cuda_stages())

    def _cuda_stages(self) -> tuple[Callable, Callable]:
        device, transform = self.device, self.transform
        side = torch.cuda.Stream(device)

        def stage(batch: dict) -> dict:
            with torch.cuda.stream(side):
                out = dict(batch)
                for key in MOVED:
                    if isinstance(out.get(key), torch.Tensor):
                        out[key] = out[key].to(device, non_blocking=True)
                return transform(out) if transform is not None else out

        def hand_over(batch: dict) -> dict:
            current = torch.cuda.current_stream(device)
            current.wait_stream(side)
            for value in batch.values():
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(current)
            return batch

        return stage, hand_over
