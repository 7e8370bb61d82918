"""Latency of the converted dlib models: PyTorch eager vs ONNX Runtime (the networks), and the whole steps.

Rows (median and p90 ms over --iters calls after --warmup, wall clock, CUDA synchronised):
- dlib_resnet, batch B: the 150x150 -> 128-d network on B chips; eager, and ORT on `facezoo export`'s float graph.
- dlib_mmod CNN, W x H: the detector network on the tiled pyramid tensor of a W x H image (eager; ORT on a graph
  exported for that tensor's size).
- dlib_mmod detect, W x H, upsample U: the whole detector (pyramid, network, box decoding, NMS) without landmarks.
- dlib_sp5 / dlib_sp68 per face: the regression-tree cascades in numpy (CPU only).
Needs `facezoo models fetch dlib` and facezoo[onnx]. Images: scikit-image's astronaut, resized.

    python benchmarks/dlib_latency.py --device cpu --threads 2 --batches 1 16 --sizes 640x480 --iters 20
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from facezoo.bench.latency import _ort_session as ort_session
from facezoo.bench.latency import _time, percentile


def timed(call, sync, warmup: int, iters: int) -> tuple[float, float]:
    """(median, p90) ms of `call` over iters calls after warmup calls (facezoo bench latency's timer)."""
    times = _time(call, sync, warmup, iters)
    return percentile(times, 50), percentile(times, 90)


def row(what: str, runtime: str, device, stats, per: int = 1) -> str:
    med, p90 = stats
    return f"| {what} | {runtime} | {device} | {med:.2f} | {p90:.2f} | {med / per:.2f} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--sizes", nargs="+", default=["640x480"], help="detector image sizes WxH")
    p.add_argument("--upsample", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args()

    from PIL import Image
    from skimage import data

    import facezoo
    from facezoo.device import resolve_device
    from facezoo.export.onnx import export_onnx
    from facezoo.sdk.detect.dlib_mmod import DlibMMOD
    from facezoo.sdk.landmarker import create_landmarker

    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    print(f"threads {args.threads}, warmup {args.warmup}, iters {args.iters}\n")
    print("| model / step | runtime | device | median ms | p90 ms | ms per item |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = facezoo.load_model("dlib_resnet", "cpu").module  # the EmbedderModule (backbone + preprocessing)
        onnx_path = Path(tmp) / "dlib_resnet.onnx"
        export_onnx(model.cpu(), onnx_path, check=False)
        model.to(dev)
        sess = ort_session(onnx_path, dev, args.threads)
        for b in args.batches:
            chips = rng.integers(0, 256, (b, 3, 150, 150)).astype(np.float32)
            x = torch.from_numpy(chips).to(dev)
            with torch.inference_mode():
                print(
                    row(
                        f"dlib_resnet, batch {b}",
                        "eager",
                        dev,
                        timed(lambda x=x: model.backbone(x), sync, args.warmup, args.iters),
                        b,
                    )
                )
            feed = {sess.get_inputs()[0].name: chips}
            print(
                row(
                    f"dlib_resnet, batch {b}",
                    "onnxruntime",
                    dev,
                    timed(lambda feed=feed: sess.run(None, feed), sync, args.warmup, args.iters),
                    b,
                )
            )

        det = DlibMMOD(device=dev, landmarker=None, upsample=args.upsample)
        astronaut = Image.fromarray(data.astronaut())
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            img = np.array(astronaut.resize((w, h), Image.BILINEAR))
            tiled, _ = det.tiled_input(torch.from_numpy(img).to(dev).permute(2, 0, 1).float())
            with torch.inference_mode():
                print(row(f"dlib_mmod CNN, {w}x{h} (tensor {tiled.shape[3]}x{tiled.shape[2]})", "eager", dev,
                          timed(lambda t=tiled: det.net(t), sync, args.warmup, args.iters)))  # fmt: skip
            cnn_path = Path(tmp) / f"mmod_{w}x{h}.onnx"
            torch.onnx.export(
                det.net.cpu(), (tiled.cpu(),), str(cnn_path), input_names=["x"], dynamo=True, verbose=False
            )
            det.net.to(dev)
            cnn = ort_session(cnn_path, dev, args.threads)
            feed = {"x": tiled.cpu().numpy()}
            print(
                row(
                    f"dlib_mmod CNN, {w}x{h}",
                    "onnxruntime",
                    dev,
                    timed(lambda s=cnn, f=feed: s.run(None, f), sync, args.warmup, args.iters),
                )
            )
            print(row(f"dlib_mmod detect, {w}x{h}, upsample {args.upsample}", "eager", dev,
                      timed(lambda im=img: det.detect(im), sync, args.warmup, args.iters)))  # fmt: skip

        img = data.astronaut()
        for name in ("dlib_sp5", "dlib_sp68"):
            lm = create_landmarker(name)
            print(
                row(
                    f"{name}, one face",
                    "numpy",
                    "cpu",
                    timed(lambda lm=lm: lm(img, (168, 69, 265, 166)), lambda: None, args.warmup, args.iters),
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
