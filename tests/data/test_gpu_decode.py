"""GpuJpegDecoder with Pillow standing in for nvJPEG, against the CPU pipeline (dataset decode + Collate).

The datasets are real: a RecordIO packed with facezoo.data.pack and an image folder, holding JPEG and PNG images
of several sizes. Resizing on the "device" (torch interpolate, antialiased bilinear) may differ from Pillow's
fixed-point bilinear by one grey level; images already at the target size must be identical.
"""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from facezoo.data.folders import ImageFolderDataset
from facezoo.data.gpu_decode import GpuJpegDecoder, pillow_decode, resize_to
from facezoo.data.image import encode_image, image_ext
from facezoo.data.loader import Collate, EncodedCollate
from facezoo.data.pack import pack_encoded
from facezoo.data.prefetch import DevicePrefetcher
from facezoo.data.recordio import RecordDataset
from facezoo.errors import ConfigError, DataError

SIZE = (40, 36)
# (label, (h, w), format): target-size images, smaller, larger, both formats, interleaved.
SPECS = [
    (0, SIZE, "jpeg"),
    (0, (30, 28), "png"),
    (1, (52, 44), "jpeg"),
    (1, SIZE, "png"),
    (2, (25, 50), "jpeg"),
    (2, (64, 64), "png"),
    (3, SIZE, "jpeg"),
    (3, (41, 35), "jpeg"),
]


def picture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth image with an edge (compresses like a photo, has detail for resizing to act on)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0.5, 3, 3)
    img = np.stack([yy * a * 255 / h, xx * b * 255 / w, (yy + xx) * c * 60 / (h + w)], -1) % 256
    img[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def encoded_specs():
    return [(label, encode_image(picture(h, w, k), fmt)) for k, (label, (h, w), fmt) in enumerate(SPECS)]


@pytest.fixture
def rec(tmp_path):
    pack_encoded(encoded_specs(), tmp_path / "rec", image_size=SIZE)
    return RecordDataset(tmp_path / "rec")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "folder"
    for k, (label, data) in enumerate(encoded_specs()):
        (root / f"id{label}").mkdir(parents=True, exist_ok=True)
        (root / f"id{label}" / f"{k}.{image_ext(data)}").write_bytes(data)
    return ImageFolderDataset(root)


def cpu_and_gpu_batches(ds, decoder):
    """The same indices through the CPU pipeline and through decode=False + EncodedCollate + decoder."""
    idx = list(range(len(ds)))
    cpu = Collate(SIZE)([ds[i] for i in idx])
    ds.decode = False
    encoded = EncodedCollate()([ds[i] for i in idx])
    ds.decode = True
    return cpu, encoded, decoder(encoded)


def assert_matches_cpu(cpu, gpu, sizes):
    assert gpu["images"].shape == (len(sizes), *SIZE, 3) and gpu["images"].dtype == torch.uint8
    assert gpu["images"].is_contiguous()
    assert torch.equal(gpu["labels"], cpu["labels"]) and gpu["labels"].dtype == torch.int64
    for i, hw in enumerate(sizes):
        diff = (gpu["images"][i].int() - cpu["images"][i].int()).abs().max().item()
        if tuple(hw) == SIZE:
            assert diff == 0, f"image {i} at target size differs by {diff}"
        else:
            assert diff <= 1, f"resized image {i} differs by {diff} (> 1 grey level)"


@pytest.mark.parametrize("which", ["rec", "folder"])
def test_decoder_equals_cpu_pipeline(which, request):
    ds = request.getfixturevalue(which)
    calls = []

    def decode_fn(datas):
        calls.append(list(datas))
        return pillow_decode(datas)

    cpu, encoded, gpu = cpu_and_gpu_batches(ds, GpuJpegDecoder(SIZE, "cpu", decode_fn=decode_fn))
    assert encoded["skipped"] == 0 and gpu["skipped"] == 0
    assert "encoded" not in gpu
    sizes = [Image.open(io.BytesIO(d)).size[::-1] for d in encoded["encoded"]]
    assert_matches_cpu(cpu, gpu, sizes)
    n_jpeg = sum(d[:3] == b"\xff\xd8\xff" for d in encoded["encoded"])
    assert n_jpeg == 5
    assert len(calls) == 1 and len(calls[0]) == n_jpeg  # every JPEG in one batched call, no PNG sent to it
    assert all(t.dtype == torch.uint8 and t.dim() == 1 and bytes(t[:3].tolist()) == b"\xff\xd8\xff" for t in calls[0])


def test_encoded_mode_returns_stored_bytes(rec, folder):
    for ds in (rec, folder):
        ds.decode = False
        for i in range(len(ds)):
            data, label = ds[i]
            assert data == ds.read_encoded(i) and label == int(ds.labels[i])
        ds.decode = True
        image, _ = ds[0]
        assert image.dtype == np.uint8 and image.ndim == 3  # the default mode still decodes


def test_encoded_mode_skips_unreadable_record(tmp_path):
    pack_encoded(encoded_specs()[:3], tmp_path / "rec", image_size=SIZE)
    ds = RecordDataset(tmp_path / "rec", skip_corrupt=True)
    rec = tmp_path / "rec" / "train.rec"
    blob = bytearray(rec.read_bytes())
    at = ds.rec.offset(int(ds.keys[2]))
    blob[at : at + 4] = b"\0\0\0\0"  # the third image's frame loses its magic
    rec.write_bytes(bytes(blob))
    ds = RecordDataset(tmp_path / "rec", skip_corrupt=True)
    ds.decode = False
    with pytest.warns(UserWarning, match="bad magic"):
        assert ds[2] is None
    assert ds[0][0] == encoded_specs()[0][1]
    ds.skip_corrupt = False
    with pytest.raises(DataError, match=f"key {int(ds.keys[2])}: bad magic"):
        ds[2]


def test_through_dataloader_and_prefetcher(rec):
    """The trainer's GPU-decode wiring on CPU: encoded loader -> DevicePrefetcher(transform=decoder)."""
    cpu_loader = DataLoader(rec, batch_size=3, collate_fn=Collate(SIZE))
    rec_enc = RecordDataset(rec.rec.rec_path.parent)
    rec_enc.decode = False
    enc_loader = DataLoader(rec_enc, batch_size=3, collate_fn=EncodedCollate())
    decoder = GpuJpegDecoder(SIZE, "cpu", decode_fn=pillow_decode)
    got = list(DevicePrefetcher(enc_loader, "cpu", transform=decoder))
    base = list(cpu_loader)
    assert len(got) == len(base) == 3
    for a, b in zip(got, base):
        assert torch.equal(a["labels"], b["labels"])
        assert (a["images"].int() - b["images"].int()).abs().max() <= 1


class NvjpegLike:
    """Pillow decode with nvJPEG's failure behaviour: any bad stream in a list fails the whole call (no partial
    results); CMYK JPEGs are refused too (taken as unsupported on the GPU)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, datas):
        self.calls += 1
        for d in datas:
            raw = d.numpy().tobytes()
            try:
                mode = Image.open(io.BytesIO(raw)).mode
            except Exception:
                raise RuntimeError("Error while decoding JPEG images: Failed to get image info") from None
            if mode == "CMYK":
                raise RuntimeError("Error while decoding JPEG images: unsupported")
        return pillow_decode(datas)


def corrupt_batch():
    good = [encode_image(picture(40, 36, k)) for k in range(4)]
    bad = b"\xff\xd8\xff\xe0" + b"\x00" * 50  # a JPEG signature, then nothing decodable
    return {
        "encoded": [good[0], good[1], bad, good[2], good[3]],
        "labels": torch.tensor([5, 6, 7, 8, 9]),
        "skipped": 1,
    }, good


def test_corrupt_jpeg_raises_data_error_naming_position():
    batch, _ = corrupt_batch()
    with pytest.raises(DataError, match=r"sample 2 of an encoded batch.*data.decode=cpu"):
        GpuJpegDecoder(SIZE, "cpu", decode_fn=NvjpegLike())(batch)


def test_corrupt_jpeg_skipped_and_batch_recovered():
    batch, good = corrupt_batch()
    fn = NvjpegLike()
    with pytest.warns(UserWarning, match="skipping corrupt sample"):
        out = GpuJpegDecoder(SIZE, "cpu", decode_fn=fn, skip_corrupt=True)(batch)
    assert out["labels"].tolist() == [5, 6, 8, 9]
    assert out["skipped"] == 2  # one from the workers, one here
    expected = np.stack([np.asarray(Image.open(io.BytesIO(g)).convert("RGB")) for g in good])
    assert np.array_equal(out["images"].numpy(), expected)
    assert fn.calls == 1 + 5  # the failed batched call, then one call per image


def test_gpu_rejected_jpeg_falls_back_to_pillow():
    cmyk = io.BytesIO()
    Image.new("CMYK", (36, 40), (10, 200, 30, 5)).save(cmyk, format="JPEG", quality=95)
    rgb = encode_image(picture(40, 36, 1))
    out = GpuJpegDecoder(SIZE, "cpu", decode_fn=NvjpegLike())(
        {"encoded": [rgb, cmyk.getvalue()], "labels": torch.tensor([1, 2])}
    )
    expected = np.asarray(Image.open(io.BytesIO(cmyk.getvalue())).convert("RGB"))
    assert np.array_equal(out["images"][1].numpy(), expected)
    assert out["labels"].tolist() == [1, 2] and out["skipped"] == 0


def test_corrupt_png_skipped():
    png = encode_image(picture(40, 36, 2), "png")
    out = None
    with pytest.warns(UserWarning):
        out = GpuJpegDecoder(SIZE, "cpu", decode_fn=pillow_decode, skip_corrupt=True)(
            {"encoded": [png, b"\x89PNG\r\n\x1a\nbroken"], "labels": torch.tensor([3, 4]), "skipped": 0}
        )
    assert out["labels"].tolist() == [3] and out["skipped"] == 1


def test_resize_to_hand_computed():
    # width 2 -> 4, align_corners=False: source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to
    # [0, 1] -> 0, 0.25, 0.75, 1 of the way from 0 to 100: 0, 25, 75, 100. Rows 1 -> 2 repeat.
    img = torch.tensor([[[0, 100]], [[10, 10]], [[200, 0]]], dtype=torch.uint8)  # (3, 1, 2)
    out = resize_to([img, torch.zeros((3, 2, 4), dtype=torch.uint8)], (2, 4))
    assert out.shape == (2, 2, 4, 3)
    assert out[0, 0, :, 0].tolist() == [0, 25, 75, 100]
    assert out[0, 1, :, 1].tolist() == [10, 10, 10, 10]
    assert out[0, 1, :, 2].tolist() == [200, 150, 50, 0]
    assert out[1].sum() == 0
    # shrinking 4 -> 2 with antialias: triangle filter widened to support 2; output j centred at (j + 0.5) * 2
    # weighs source x by 1 - |x + 0.5 - centre| / 2: j=0 -> x 0,1,2 by 3/7, 3/7, 1/7; j=1 -> x 1,2,3 by 1/7, 3/7, 3/7.
    wide = torch.tensor([[[0, 100, 200, 40]]] * 3, dtype=torch.uint8)
    expected = [round((0 * 3 + 100 * 3 + 200) / 7), round((100 + 200 * 3 + 40 * 3) / 7)]  # 71, 117
    assert resize_to([wide], (1, 2))[0, 0, :, 0].tolist() == expected


def test_resize_to_empty():
    assert resize_to([], SIZE).shape == (0, *SIZE, 3)


def test_missing_torchvision_is_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    with pytest.raises(
        ConfigError,
        match="data.decode=gpu needs torchvision with CUDA; install torchvision "
        "matching your torch, or use data.decode=cpu",
    ):
        GpuJpegDecoder((112, 112), "cuda")


def test_cpu_device_is_config_error():
    with pytest.raises(ConfigError, match=r"data.decode=gpu needs torchvision with CUDA.*not a CUDA GPU"):
        GpuJpegDecoder((112, 112), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_torchvision_without_cuda_is_config_error(monkeypatch):
    fake = types.ModuleType("torchvision")
    fake_io = types.ModuleType("torchvision.io")
    fake_io.ImageReadMode = types.SimpleNamespace(RGB=3)
    fake_io.decode_jpeg = lambda *a, **k: pytest.fail("must not decode without CUDA")
    fake.io = fake_io
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.io", fake_io)
    with pytest.raises(ConfigError, match=r"or use data.decode=cpu \(torch.cuda.is_available\(\) is False\)"):
        GpuJpegDecoder((112, 112), "cuda")


def _torchvision_cuda() -> bool:
    try:
        import torchvision.io  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _torchvision_cuda(), reason="needs torchvision and CUDA")
def test_nvjpeg_close_to_cpu_pipeline(rec):  # runs only on a GPU machine with torchvision
    cpu, _encoded, gpu = cpu_and_gpu_batches(rec, GpuJpegDecoder(SIZE, "cuda"))
    assert gpu["images"].is_cuda and torch.equal(gpu["labels"].cpu(), cpu["labels"])
    diff = (gpu["images"].cpu().int() - cpu["images"].int()).abs().float()
    assert diff.mean() < 2 and diff.max() <= 40  # nvJPEG's IDCT/upsampling differ from libjpeg-turbo's slightly
