"""Hostile images: decompression bombs refused from the header, foreign formats never decoded, clean errors."""

import resource
import struct
import time
import zlib

import pytest
import torch

from facezoo.cli import main
from facezoo.data.folders import ImageFolderDataset
from facezoo.data.image import MAX_PIXELS, decode_image
from facezoo.errors import DataError

from .test_image import _chunk


def bomb_png(side: int) -> bytes:
    """A valid 1-bit grey PNG of side x side black pixels: a few KB claiming side^2 pixels."""
    row = b"\0" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8000, 20000])
def test_a_bomb_is_refused_before_decoding(side):
    data = bomb_png(side)
    assert len(data) < 200_000 and side * side > MAX_PIXELS
    before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(DataError, match=f"{side * side:,} pixels exceeds the budget of {MAX_PIXELS:,}"):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_the_budget_can_be_set(monkeypatch):
    data = bomb_png(200)
    assert decode_image(data).shape == (200, 200, 3)
    with pytest.raises(DataError, match="exceeds the budget of 10,000 pixels"):
        decode_image(data, budget=10_000)
    monkeypatch.setenv("FACEZOO_MAX_PIXELS", "30000")
    with pytest.raises(DataError, match="budget of 30,000"):
        decode_image(data)


def test_formats_outside_the_list_are_never_decoded(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(DataError, match="cannot decode"):
        decode_image(eps, "upload.eps")
    # a format Pillow reads but the list does not name (PPM) is refused the same way
    ppm = b"P6\n2 2\n255\n" + bytes(12)
    with pytest.raises(DataError, match="cannot decode"):
        decode_image(ppm, "x.ppm")


def test_a_bomb_in_a_training_set_is_skipped_or_reported(tmp_path, capsys):
    (tmp_path / "set" / "a").mkdir(parents=True)
    (tmp_path / "set" / "a" / "bomb.png").write_bytes(bomb_png(20000))
    (tmp_path / "set" / "a" / "ok.png").write_bytes(bomb_png(16))
    ds = ImageFolderDataset(tmp_path / "set", skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipping corrupt sample"):
        assert [s is None for s in (ds[0], ds[1])] == [True, False]
    assert main(["data", "inspect", str(tmp_path / "set")]) == 0  # inspect reports it among the corrupt samples
    out = capsys.readouterr().out
    assert "corrupt:     1: " in out and "bomb.png" in out


class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return decode_image(b"not an image", f"record {i}")


def test_a_worker_error_keeps_only_its_own_message():
    loader = torch.utils.data.DataLoader(_Failing(), batch_size=2, num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    message = str(info.value)
    assert message.startswith("record 0: cannot decode image") and "Traceback" not in message
