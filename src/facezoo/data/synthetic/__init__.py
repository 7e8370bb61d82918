"""Procedural synthetic identities: facezoo's embedded, downloadable-nothing face data set.

An identity is a vector of face geometry and fine appearance (`IdentityParams`). An image is that identity
rendered under per-image nuisance (`Nuisance`): 3-D pose, imperfect 5-point alignment, expression, lighting,
colour cast, background clutter, blur, sensor noise, occlusion and JPEG quality. Faces are drawn as polygons on a
2x canvas (Pillow) and box-downsampled, then aligned like ArcFace crops: a least-squares similarity maps the
(noisy) projected eye, nose-tip and mouth-corner points onto the 112x112 template, so identity lives in the
relative geometry, not in where the eyes are.

Every random draw comes from `identity_rng(seed, i)` or `image_rng(seed, i, j)`, so any image can be regenerated
alone and generation can run in any order or number of processes with byte-identical output.

face.py    identity parameters and per-image nuisance, and their seeded generators
render.py  the rasteriser: polygons on a 2x canvas, ArcFace-style alignment, camera model
write.py   synthesize(): the training RecordIO and the verification .bin sets; contact_sheet()
"""

from .face import IdentityParams, Nuisance, identity_rng, image_rng, sample_identity, sample_nuisance
from .render import render, render_face, render_jpeg
from .write import GENERATOR_VERSION, contact_sheet, synthesize

__all__ = [
    "GENERATOR_VERSION",
    "IdentityParams",
    "Nuisance",
    "contact_sheet",
    "identity_rng",
    "image_rng",
    "render",
    "render_face",
    "render_jpeg",
    "sample_identity",
    "sample_nuisance",
    "synthesize",
]
