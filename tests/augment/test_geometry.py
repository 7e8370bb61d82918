"""The renderers' geometry: the rasteriser against Pillow's polygon fill and a hand-built z-test, the
weak-perspective fit against known poses, and the mean face against the anthropometric facts it is built from."""

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from facezoo.augment import meanface
from facezoo.augment.mask2d import fit_tps
from facezoo.augment.pose import Pose, fit_pose, rotation
from facezoo.augment.raster import grid_faces, rasterize
from facezoo.errors import DataError
from facezoo.geometry import ARCFACE_TEMPLATE_112


def test_rasterised_triangles_cover_the_pixel_centres_inside_them():
    rng = np.random.default_rng(0)
    for _ in range(20):
        tri = rng.uniform(-5, 45, (3, 2))
        r = rasterize(tri, np.zeros(3), np.array([[0, 1, 2]]), (40, 40))
        ys, xs = np.mgrid[0:40, 0:40]
        a, b, c = tri
        cross = lambda p, q, x, y: (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])
        s = [cross(a, b, xs, ys), cross(b, c, xs, ys), cross(c, a, xs, ys)]
        inside = ((s[0] >= 0) & (s[1] >= 0) & (s[2] >= 0)) | ((s[0] <= 0) & (s[1] <= 0) & (s[2] <= 0))
        # centres within 1e-6 of an edge may go either way
        area = abs(cross(a, b, *c))
        edge = np.min([np.abs(v) for v in s], 0) / max(area, 1e-9) < 1e-6
        assert np.array_equal(r.covered[~edge], inside[~edge])


def test_a_polygon_mesh_matches_pillow_up_to_edge_pixels():
    poly = np.array([[5.2, 3.1], [30.7, 8.4], [26.3, 29.9], [9.1, 24.2]])
    r = rasterize(poly, np.zeros(4), np.array([[0, 1, 2], [0, 2, 3]]), (32, 32))
    im = Image.new("L", (32 * 8, 32 * 8), 0)
    ImageDraw.Draw(im).polygon([tuple(v) for v in ((poly + 0.5) * 8).tolist()], fill=255)
    ref = np.asarray(im.reduce(8)) > 127
    assert (r.covered != ref).sum() <= 0.06 * ref.sum()
    assert r.covered.sum() == pytest.approx(ref.sum(), rel=0.05)


def test_the_nearest_surface_wins_and_attributes_interpolate_exactly():
    # two overlapping squares: the far one (depth 0) drawn second must not hide the near one (depth 5)
    sq = np.array([[2.0, 2.0], [20.0, 2.0], [20.0, 20.0], [2.0, 20.0]])
    xy = np.concatenate([sq, sq + 6])
    depth = np.r_[np.full(4, 5.0), np.zeros(4)]
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    r = rasterize(xy, depth, faces, (32, 32))
    assert (r.face[10:20, 10:20] < 2).all() and (r.face[22:26, 22:26] >= 2).all()
    assert r.depth[10, 10] == 5.0 and r.depth[24, 24] == 0.0
    # a linear function of the vertices' positions is reproduced at every covered pixel
    values = np.stack([xy[:, 0] * 2 + xy[:, 1] * 3 + 1], 1)
    got = r.interpolate(faces, values)[..., 0]
    ys, xs = np.mgrid[0:32, 0:32]
    assert np.allclose(got[r.covered], (xs * 2 + ys * 3 + 1)[r.covered])


def test_grid_faces_tile_the_grid_once():
    faces = grid_faces(4, 5)
    assert len(faces) == 2 * 3 * 4 and faces.max() == 19
    ys, xs = np.mgrid[0:4, 0:5]
    xy = np.stack([xs.ravel() * 10.0, ys.ravel() * 10.0], 1)
    r = rasterize(xy + 0.5, np.zeros(20), faces, (40, 50))
    assert r.covered[1:30, 1:40].all()


@pytest.mark.parametrize("yaw", [-80, -60, -30, 0, 30, 60, 80])
@pytest.mark.parametrize("pitch", [-25, 0, 25])
def test_fit_pose_recovers_a_known_weak_perspective_view(yaw, pitch):
    X = meanface.landmarks_3d()
    R = rotation(math.radians(yaw), math.radians(pitch), math.radians(12))
    truth = Pose(R, 0.8, np.array([40.0, 70.0]))
    f = fit_pose(X, truth.project(X)[0])
    assert np.allclose(f.R, R, atol=1e-6) and f.s == pytest.approx(0.8) and np.allclose(f.t, truth.t)
    assert np.allclose(f.angles, np.radians([yaw, pitch, 12]), atol=1e-6)
    assert np.allclose(f.R @ f.R.T, np.eye(3)) and np.linalg.det(f.R) == pytest.approx(1.0)


def test_fit_pose_refuses_degenerate_or_non_finite_points():
    X = meanface.landmarks_3d()
    with pytest.raises(DataError, match="degenerate"):
        fit_pose(X, np.zeros((5, 2)))
    with pytest.raises(DataError, match="NaN"):
        fit_pose(X, np.full((5, 2), np.nan))


def test_the_mean_face_seen_frontally_is_the_arcface_template():
    lm = meanface.landmarks_3d()
    t = np.asarray(ARCFACE_TEMPLATE_112)
    sym = (t + t[[1, 0, 2, 4, 3]] * [-1, 1] + [2 * meanface.EYE_MID_112[0], 0]) / 2  # the template, symmetrised
    assert np.allclose(meanface.to_template(lm[:, :2]), sym, atol=1e-9)
    assert np.linalg.norm(lm[1] - lm[0]) == pytest.approx(62.0)  # interpupillary distance, mm
    assert lm[2, 2] - lm[0, 2] == pytest.approx(30.0)  # the nose tip 30 mm in front of the eyes
    assert 60 < lm[3, 1] < 80 and 45 < 2 * lm[4, 0] < 56  # mouth ~72 mm below the pupils, ~51 mm wide


def test_the_mask_spans_nose_bridge_to_below_the_chin_cheek_to_cheek_above_the_skin():
    verts, uv, faces = meanface.mask_mesh()
    x, y, z = verts.T
    assert y.min() >= 13.0  # the top edge stays below the eyes (pupils at 0, lids at about +-10 mm)
    assert y.max() >= 118.0 + meanface.JAW_MARGIN - 0.5  # below the chin (gnathion ~115 mm)
    assert x.min() <= -60 and x.max() >= 60  # cheek to cheek (bizygomatic 136 mm)
    assert uv.min() == 0 and uv.max() == 1
    inside = np.abs(x) < meanface._interp(meanface._WIDTH, y) - 1
    skin = meanface.face_depth(x[inside], y[inside])
    assert (z[inside] >= skin + meanface.MASK_OFFSET - 0.1).all()  # 0.1: the envelope table's interpolation
    # the nose tip and both mouth corners lie inside the mask's frontal outline
    r = rasterize(meanface.to_template(verts[:, :2]) * 4, z, faces, (448, 448))
    for px in meanface.to_template(meanface.landmarks_3d()[2:, :2]) * 4:
        assert r.covered[round(px[1]), round(px[0])]


def test_tps_interpolates_its_control_points_and_keeps_affine_maps():
    rng = np.random.default_rng(1)
    src = np.asarray(ARCFACE_TEMPLATE_112)
    A = np.array([[1.1, 0.2], [-0.15, 0.9]])
    warp = fit_tps(src, src @ A.T + [3, -2], lam=0.0)
    pts = rng.uniform(0, 112, (50, 2))
    assert np.allclose(warp(pts), pts @ A.T + [3, -2], atol=1e-8)
    dst = src + rng.normal(0, 3, src.shape)
    assert np.allclose(fit_tps(src, dst, lam=0.0)(src), dst, atol=1e-8)
