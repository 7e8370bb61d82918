"""dlib's mean face (dlib/image_transforms/interpolation.h, get_face_chip_details): the positions, in a unit square,
that its face chips put landmarks at, and facezoo's 5-point template derived from them.

DLIB_FIVE      dlib's 5 points: image-right eye outer and inner corner, image-left eye outer and inner corner,
               bottom of the nose (shape_predictor_5_face_landmarks' order).
MEAN_FACE_68   iBUG 68-point mean face, points 17..67 (0..16, the jaw line, are not part of it: NaN).
CHIP_68_POINTS the 68-point indices dlib fits chips to (no eyebrows 17-26, no lower lip 55-59 and 65-67).
FACEZOO_FIVE   facezoo's 5 points (eye centres = means of 36-41 and 42-47, nose tip 30, mouth corners 48, 54)
               on the same mean face, so MTCNN / SCRFD points give chips framed as dlib's.
A unit point p sits at chip pixel size * (padding + p) / (1 + 2 padding); dlib_resnet uses size 150, padding 0.25.
"""

from __future__ import annotations

import numpy as np

# dlib's 5-point mean face (image-right eye outer, inner corner; image-left eye outer, inner; nose base).
DLIB_FIVE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
# dlib's 68-point mean face, points 17..67 (x then y), unit square.
_MEAN_X = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004, 0.490127,
    0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825,
    0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149, 0.340985,
    0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721, 0.490127, 0.423532, 0.338094, 0.290379,
    0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127, 0.42689,
]  # fmt: skip
_MEAN_Y = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915, 0.106454,
    0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758,
    0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233,
    0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805,
    0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
]  # fmt: skip
MEAN_FACE_68 = np.concatenate([np.full((17, 2), np.nan), np.stack([_MEAN_X, _MEAN_Y], 1)])  # (68, 2), 0..16 unset
CHIP_68_POINTS = [i for i in range(17, 68) if not (17 <= i <= 26 or 55 <= i <= 59 or 65 <= i <= 67)]
FACEZOO_FIVE = np.stack(
    [MEAN_FACE_68[36:42].mean(0), MEAN_FACE_68[42:48].mean(0), MEAN_FACE_68[30], MEAN_FACE_68[48], MEAN_FACE_68[54]]
)
SIZE, PADDING = 150, 0.25  # dlib_resnet's chips


def chip_points(unit_points, size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """Mean-face points (unit square) -> chip pixels: size * (padding + p) / (1 + 2 padding)."""
    return (padding + np.asarray(unit_points, np.float64)) / (2 * padding + 1) * size


def facezoo_template(size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """(5, 2) chip positions of facezoo's 5 points (eye centres, nose tip, mouth corners) in a dlib chip."""
    return chip_points(FACEZOO_FIVE, size, padding)
