"""dlib .dat files -> facezoo files (the convert step of `facezoo models fetch dlib`).

  dlib_face_recognition_resnet_model_v1.dat -> dlib_resnet.pt   facezoo checkpoint (backbone dlib_resnet + ModelMeta)
  mmod_human_face_detector.dat             -> dlib_mmod.pt     {format, state (DlibLayers), options}, weights_only
  shape_predictor_{5,68}_face_landmarks.dat -> dlib_sp{5,68}.npz  the cascade's arrays (no pickles)
Each function takes the file's bytes and writes one output atomically.
"""

from __future__ import annotations

import numpy as np
import torch

from ...io import atomic_write
from ..embedder import ModelMeta
from .net import mmod_layers, read_network, resnet_layers
from .shape_predictor import read_shape_predictor
from .torch_net import DlibLayers, load_layers

# dlib's rule: same person when the Euclidean distance of the raw 128-d descriptors is < 0.6 (the file's loss_metric
# layer holds it too). facezoo verifies by the cosine of L2-normalised embeddings, so the model's metadata keeps
# the rule as its default operating point (thresholds["default"], sdk.thresholds.DEFAULT_KEY) in cosine: two
# descriptors of norm n at distance d have cosine 1 - d^2 / (2 n^2); with n = 1.45, the median norm of dlib_resnet
# descriptors of the 9 real faces in scikit-image's astronaut and camera and insightface's t1.jpg and 112x112 face
# (norms 1.30..1.57), d = 0.6 gives cosine 0.9144. Pairs whose norms differ from 1.45 can fall on the other side
# of dlib's rule near the boundary; calibrate (facezoo calibrate) for a FAR-based threshold.
DISTANCE_THRESHOLD = 0.6
TYPICAL_NORM = 1.45
DEFAULT_COSINE = 1 - DISTANCE_THRESHOLD**2 / (2 * TYPICAL_NORM**2)
MMOD_FORMAT = "facezoo-dlib-mmod"


def resnet_meta() -> ModelMeta:
    """dlib_resnet's metadata: 150x150 RGB chips aligned as dlib does, dlib's normalisation (pixel - mean_c) / 256."""
    from ..backbones.dlib_resnet import DLIB_MEAN_RGB, DLIB_SCALE
    from .mean_face import facezoo_template

    return ModelMeta(
        backbone="dlib_resnet",
        backbone_kwargs={},
        embedding_size=128,
        input_size=(150, 150),
        channel_order="RGB",
        mean=list(DLIB_MEAN_RGB),
        std=DLIB_SCALE,
        template=[list(map(float, p)) for p in facezoo_template(150, 0.25)],
        thresholds={"default": DEFAULT_COSINE},
    )


def convert_resnet(data: bytes, out, where: str = "dlib_face_recognition_resnet_model_v1.dat") -> None:
    """The ResNet file as a facezoo checkpoint at `out`."""
    from ..backbones.dlib_resnet import DLIB_MEAN_RGB
    from ..checkpoint import save_checkpoint

    net = read_network(data, resnet_layers(), where)
    if [float(np.float32(v)) for v in net.input["mean"]] != [float(np.float32(v)) for v in DLIB_MEAN_RGB]:
        raise ValueError(f"{where}: input means {net.input['mean']} are not dlib's")
    meta = resnet_meta()
    backbone = meta.build_backbone()
    load_layers(backbone.body, net.layers[:-1], where)
    with torch.no_grad():
        backbone.fc.weight.copy_(torch.from_numpy(net.layers[-1]["weight"]))
    save_checkpoint(out, meta, backbone.state_dict())


def convert_mmod(data: bytes, out, where: str = "mmod_human_face_detector.dat") -> None:
    """The MMOD detector's weights and options at `out` (read by sdk.detect.dlib_mmod)."""
    layers = mmod_layers()
    net = read_network(data, layers, where)
    module = DlibLayers(layers[1:])
    load_layers(module, net.layers, where)
    inp, loss = net.input, net.loss
    options = {
        "mean": [float(v) for v in inp["mean"]],
        "pyramid_rate": int(inp["pyramid_rate"]),
        "padding": int(inp["padding"]),
        "outer_padding": int(inp["outer_padding"]),
        "windows": [[int(w), int(h), str(label)] for w, h, label in loss["windows"]],
        "nms_iou": float(loss["nms_iou"]),
        "nms_covered": float(loss["nms_covered"]),
        "bbr": bool(loss["bbr"]),
    }
    if options["bbr"]:
        raise ValueError(f"{where}: bounding-box regression outputs are not supported")
    with atomic_write(out) as f:
        torch.save({"format": MMOD_FORMAT, "state": module.state_dict(), "options": options}, f)


def convert_shape_predictor(data: bytes, out, where: str) -> None:
    """A shape predictor's arrays as an .npz at `out` (read by sdk.landmarker)."""
    sp = read_shape_predictor(data, where)
    with atomic_write(out) as f:
        np.savez(f, **sp.to_arrays())


def convert_all(blobs: dict, stage, say=lambda msg: None) -> None:
    """The four face-recognition-models files (by name) -> dlib_resnet.pt, dlib_mmod.pt, dlib_sp5.npz, dlib_sp68.npz
    in the folder `stage` (fetch's convert step). The .dat files are kept beside them (a later facezoo can convert
    again offline; the parity tests give them to dlib itself)."""
    from pathlib import Path

    stage = Path(stage)
    for name, data in blobs.items():
        with atomic_write(stage / name) as f:
            f.write(data)
    steps = (
        ("dlib_face_recognition_resnet_model_v1.dat", "dlib_resnet.pt", convert_resnet),
        ("mmod_human_face_detector.dat", "dlib_mmod.pt", convert_mmod),
        ("shape_predictor_5_face_landmarks.dat", "dlib_sp5.npz", convert_shape_predictor),
        ("shape_predictor_68_face_landmarks.dat", "dlib_sp68.npz", convert_shape_predictor),
    )
    for source, target, step in steps:
        say(f"dlib: converting {source} -> {target}")
        step(blobs[source], stage / target, where=source)
