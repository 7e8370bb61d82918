"""3-D-aware mask adding: the mean face's mask surface (meanface.py) posed from the landmarks, textured and z-tested.

The pose is a weak-perspective fit of the mean face's 5 landmarks to the image's 5 points (pose.py): rotation,
scale and translation. The mask mesh is rotated with the face, so its texture follows yaw and pitch; the mask and
the face surface go through one z-buffer, so parts of the mask turned behind the nose or the far cheek are hidden
(self-occlusion), and at large yaw the mask still wraps the visible lower face up to its silhouette, where a 2-D
warp of a frontal mask leaves the near cheek bare and spills past the far one.
"""

from __future__ import annotations

import functools

import numpy as np

from . import meanface
from .landmarks import FaceLandmarks
from .layer import render_layer, vertex_normals
from .pose import Pose, fit_pose


@functools.lru_cache(maxsize=1)
def _meshes():
    verts, uv, faces = meanface.mask_mesh()
    face_verts, face_faces = meanface.face_mesh()
    return verts, uv, faces, vertex_normals(verts, faces), face_verts, face_faces


def face_pose(landmarks: FaceLandmarks) -> Pose:
    """The weak-perspective pose of the mean face that best explains the 5 points."""
    return fit_pose(meanface.landmarks_3d(), landmarks.five)


def render_mask_3d(
    shape: tuple[int, int], landmarks: FaceLandmarks | None, texture: np.ndarray, pose: Pose | None = None
) -> np.ndarray:
    """float32 RGBA (H, W, 4) layer of a mask on the face at `landmarks` (its pose fitted), or at `pose`."""
    pose = pose or face_pose(landmarks)
    verts, uv, faces, normals, face_verts, face_faces = _meshes()
    xy, depth = pose.project(verts)
    fxy, fdepth = pose.project(face_verts)
    return render_layer(shape, xy, depth, faces, uv, normals @ pose.R.T, texture, occluder=(fxy, fdepth, face_faces))
