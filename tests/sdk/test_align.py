import math

import numpy as np
import pytest
import torch

from facezoo.errors import DataError
from facezoo.sdk.align import (
    align_face,
    align_faces,
    arcface_template,
    estimate_norm,
    umeyama,
    warp_affine,
    warp_affine_torch,
)

BASE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])


def rot(theta):
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


# ---------------------------------------------------------------- templates


def test_template_112_is_base():
    np.testing.assert_allclose(arcface_template(), BASE)
    np.testing.assert_allclose(arcface_template(112), BASE)


def test_template_112x96_shifts_x_by_minus_8():
    want = np.array(
        [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]]
    )
    np.testing.assert_allclose(arcface_template((112, 96)), want, atol=1e-12)


def test_template_128_shifts_x_by_plus_8():
    want = np.array(
        [[46.2946, 51.6963], [81.5318, 51.5014], [64.0252, 71.7366], [49.5493, 92.3655], [78.7299, 92.2041]]
    )
    np.testing.assert_allclose(arcface_template((128, 128)), want, atol=1e-12)


def test_template_scaled_sizes():
    # 224 = 2 * 112: scale 2, no shift. 256 = 2 * 128: scale 2 then +8*2 in x.
    np.testing.assert_allclose(arcface_template(224), BASE * 2)
    np.testing.assert_allclose(arcface_template(256), BASE * 2 + [16.0, 0.0])


# ---------------------------------------------------------------- umeyama


def test_umeyama_recovers_known_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    c, theta, t = 1.3, 0.7, np.array([5.0, -3.0])
    dst = c * src @ rot(theta).T + t
    T = umeyama(src, dst)
    np.testing.assert_allclose(T[:2, :2], c * rot(theta), atol=1e-10)
    np.testing.assert_allclose(T[:2, 2], t, atol=1e-8)
    np.testing.assert_allclose(T[2], [0, 0, 1])


def test_umeyama_without_scale_returns_rotation():
    rng = np.random.default_rng(1)
    src = rng.uniform(-10, 10, size=(6, 2))
    theta = -1.1
    dst = 2.0 * src @ rot(theta).T + [3.0, 4.0]
    T = umeyama(src, dst, scale=False)
    np.testing.assert_allclose(T[:2, :2], rot(theta), atol=1e-10)
    # t = mean(dst) - R mean(src)
    np.testing.assert_allclose(T[:2, 2], dst.mean(0) - rot(theta) @ src.mean(0), atol=1e-10)


def test_umeyama_noisy_points_within_tolerance():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, size=(200, 2))
    c, theta, t = 0.8, 2.5, np.array([-20.0, 7.0])
    dst = c * src @ rot(theta).T + t + rng.normal(0, 0.05, size=src.shape)
    T = umeyama(src, dst)
    np.testing.assert_allclose(T[:2, :2], c * rot(theta), atol=2e-3)
    np.testing.assert_allclose(T[:2, 2], t, atol=0.1)


def test_umeyama_identity():
    pts = np.array([[1.0, 2.0], [3.0, 5.0], [-4.0, 0.5]])
    np.testing.assert_allclose(umeyama(pts, pts), np.eye(3), atol=1e-12)


def test_umeyama_reflection_gives_best_rotation():
    # dst mirrors src in x. By hand: Sigma = dst^T src / n = diag(-0.5, 2), var(src) = 2.5.
    # sum d.(R s) = n * 1.5 cos(theta) is largest at theta = 0, so R = I and c = 1.5 / 2.5 = 0.6, t = 0.
    src = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    dst = src * [-1.0, 1.0]
    T = umeyama(src, dst)
    np.testing.assert_allclose(T, np.diag([0.6, 0.6, 1.0]), atol=1e-12)
    assert np.linalg.det(T[:2, :2]) > 0


def test_umeyama_reflection_matches_brute_force():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(7, 2))
    dst = src @ np.array([[1.0, 0.0], [0.0, -1.0]]) * 1.7 + rng.normal(0, 0.3, size=(7, 2))
    T = umeyama(src, dst)
    assert np.linalg.det(T[:2, :2]) > 0
    resid = ((src @ T[:2, :2].T + T[:2, 2] - dst) ** 2).sum()
    # Brute force over rotation angles; for fixed R, the optimal c and t are closed form.
    sc, dc = src - src.mean(0), dst - dst.mean(0)
    best = np.inf
    for theta in np.linspace(0, 2 * np.pi, 20000, endpoint=False):
        rs = sc @ rot(theta).T
        c = (dc * rs).sum() / (sc**2).sum()
        best = min(best, ((c * rs - dc) ** 2).sum())
    assert resid <= best + 1e-9
    assert resid >= best - 1e-3


def test_landmark_errors_name_expected_shape():
    with pytest.raises(DataError, match=r"\(5, 2\)"):
        estimate_norm(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"\(5, 2\)"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros(10))
    bad = BASE.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        estimate_norm(bad)
    with pytest.raises(DataError, match="coincide"):
        estimate_norm(np.ones((5, 2)))
    with pytest.raises(DataError, match=r"\(N, 5, 2\)"):
        align_faces([np.zeros((10, 10, 3), np.uint8)], np.zeros((1, 4, 2)))


# ---------------------------------------------------------------- warp


def test_warp_integer_translation_moves_pixels_exactly():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    M = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])  # x' = x + 2, y' = y + 1
    want = np.zeros_like(img)
    want[1:, 2:] = img[:-1, :-2]
    np.testing.assert_array_equal(warp_affine(img, M, (6, 7)), want)
    # constant border value fills the uncovered band
    want_b = np.full_like(img, 7)
    want_b[1:, 2:] = img[:-1, :-2]
    np.testing.assert_array_equal(warp_affine(img, M, (6, 7), border_value=7), want_b)


def test_warp_rotation_90():
    rng = np.random.default_rng(5)
    h, w = 4, 6
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    M = np.array([[0.0, -1.0, h - 1.0], [1.0, 0.0, 0.0]])  # x' = h-1-y, y' = x
    want = np.zeros((w, h, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            want[x, h - 1 - y] = img[y, x]
    np.testing.assert_array_equal(warp_affine(img, M, (w, h)), want)


def test_warp_scale_2_by_hand():
    img = np.repeat(np.array([[12, 20], [32, 40]], np.uint8)[..., None], 3, axis=2)
    M = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # output (x', y') samples source (x'/2, y'/2)
    # Half-pixel samples average their neighbours; taps past the last row/column are border 0.
    want = np.array(
        [
            [12, 16, 20, 10],  # y=0:  12, (12+20)/2, 20, (20+0)/2
            [22, 26, 30, 15],  # y=.5: (12+32)/2, (12+20+32+40)/4, (20+40)/2, (20+40)/4
            [32, 36, 40, 20],  # y=1:  32, (32+40)/2, 40, 40/2
            [16, 18, 20, 10],  # y=1.5: 32/2, (32+40)/4, 40/2, 40/4
        ],
        np.uint8,
    )
    out = warp_affine(img, M, (4, 4))
    for ch in range(3):
        np.testing.assert_array_equal(out[..., ch], want)


def test_warp_accepts_3x3_and_grey():
    img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    M = np.array([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])
    out = warp_affine(img, M, (4, 5))
    np.testing.assert_array_equal(out[:, 1:], img[:, :-1])
    np.testing.assert_array_equal(out[:, 0], 0)


def _smooth_image(h, w):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 60 * np.sin(xs / 9.0) + 50 * np.cos(ys / 7.0)
    g = 2.0 * xs + ys
    b = 200 - 1.5 * ys
    return np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8)


def _similarity(c, theta, tx, ty):
    M = np.zeros((2, 3))
    M[:, :2] = c * rot(theta)
    M[:, 2] = [tx, ty]
    return M


def test_warp_matches_cv2():
    cv2 = pytest.importorskip("cv2")
    img = _smooth_image(70, 90)
    for M, size in [(_similarity(0.9, 0.3, 10.5, -4.25), (64, 80)), (_similarity(1.7, -0.8, -20.0, 60.0), (112, 96))]:
        ours = warp_affine(img, M, size).astype(int)
        ref = cv2.warpAffine(img, M, (size[1], size[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        # cv2 rounds coordinates to 1/32 px and weights to fixed point: allow one grey level.
        assert np.abs(ours - ref.astype(int)).max() <= 1


def test_warp_torch_matches_numpy():
    rng = np.random.default_rng(6)
    imgs = [_smooth_image(50, 60), rng.integers(0, 256, size=(50, 60, 3), dtype=np.uint8)]
    Ms = [_similarity(1.2, 0.4, 3.0, -5.0), _similarity(0.7, -2.0, 40.0, 55.0)]
    batch = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
    for border in (0.0, 9.0):
        out = warp_affine_torch(batch, torch.tensor(np.stack(Ms)), (48, 40), border_value=border)
        assert out.shape == (2, 3, 48, 40)
        for i in range(2):
            ref = warp_affine(imgs[i], Ms[i], (48, 40), border_value=border).astype(np.float64)
            got = out[i].permute(1, 2, 0).double().numpy()
            assert np.abs(got - ref).max() <= 0.5 + 1e-2


# ---------------------------------------------------------------- align


def _dots(h, w, points, sigma):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for px, py in points:
        img += 250 * np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(img, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img, x, y, r):
    x0, y0 = round(float(x)), round(float(y))
    patch = img[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1, 0].astype(np.float64)
    ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return (patch * xs).sum() / patch.sum(), (patch * ys).sum() / patch.sum()


@pytest.mark.parametrize("size", [(112, 112), (112, 96), (128, 128)])
def test_align_face_puts_landmarks_on_template(size):
    # Face drawn 1.8x larger, rotated 25 degrees and shifted: landmarks = c R template + t.
    c, theta, t = 1.8, math.radians(25), np.array([60.3, 20.7])
    landmarks = c * BASE @ rot(theta).T + t
    img = _dots(260, 240, landmarks, sigma=1.8 * 1.2)
    crop, M = align_face(img, landmarks, size)
    assert crop.shape == (*size, 3) and crop.dtype == np.uint8 and M.shape == (2, 3)
    tmpl = arcface_template(size)
    np.testing.assert_allclose(landmarks @ M[:, :2].T + M[:, 2], tmpl, atol=1e-8)
    for x, y in tmpl:
        cx, cy = _centroid(crop, x, y, r=5)
        assert abs(cx - x) < 0.15 and abs(cy - y) < 0.15, (x, y, cx, cy)


def test_align_faces_batch_matches_single():
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, size=(150, 130, 3), dtype=np.uint8) for _ in range(2)]
    lmks = np.stack([BASE + [10, 20], BASE * 1.1 + [5, 3]])
    crops, Ms = align_faces(imgs, lmks)
    assert crops.shape == (2, 112, 112, 3) and Ms.shape == (2, 2, 3)
    for i in range(2):
        crop, M = align_face(imgs[i], lmks[i])
        np.testing.assert_array_equal(crops[i], crop)
        np.testing.assert_allclose(Ms[i], M)
