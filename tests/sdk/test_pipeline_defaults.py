"""FaceAnalyzer's defaults end to end: the operating point every decision states, channel_order for cv2 arrays,
PIL inputs decoded by data/image.py's rules (EXIF orientation, 16-bit, format allow-list, pixel budget), an
"unknown" answer from identify, and the enrolment progress bar. A fixed-answer detector and a real tiny model."""

import io

import numpy as np
import pytest
from PIL import Image

from facezoo.errors import ConfigError, DataError
from facezoo.sdk.detect.base import Detections, Detector
from facezoo.sdk.gallery import Gallery
from facezoo.sdk.pipeline import FaceAnalyzer, load_image
from facezoo.sdk.thresholds import (
    DEFAULT_KEY,
    calibrate_thresholds,
    calibrated_path,
    operating_point,
    supported_fars,
    write_thresholds,
)
from tests.sdk.test_pipeline import KPS, face_like


class OneFace(Detector):
    """One face at fixed points in every image that is not all black."""

    def detect(self, image, max_faces=None):
        if not np.asarray(image).any():
            return Detections.empty()
        return Detections(np.float32([[20, 20, 132, 132]]), np.float32([0.9]), (KPS + 20)[None])


# ---------------------------------------------------------------------- the operating point


def test_operating_point_rules():
    cal = {"1e-02": 0.3, "1e-03": 0.45}
    assert operating_point(cal) == {"far": 1e-3, "threshold": 0.45, "source": "calibrated"}  # the lowest FAR
    assert operating_point(cal, far=1e-2) == {"far": 1e-2, "threshold": 0.3, "source": "calibrated"}
    assert operating_point({DEFAULT_KEY: 0.91}) == {"threshold": 0.91, "source": "model default"}
    both = {DEFAULT_KEY: 0.91, "1e-03": 0.4}  # a calibration on the user's own pairs comes first
    assert operating_point(both)["source"] == "calibrated" and operating_point(both)["threshold"] == 0.4
    assert operating_point(both, threshold=-1) == {"threshold": -1.0, "source": "--threshold"}
    assert operating_point({}, overrides={"1e-04": 0.7}) == {"far": 1e-4, "threshold": 0.7, "source": "calibrated"}
    with pytest.raises(ConfigError, match="no threshold for FAR 1e-04 .calibrated FARs: 1e-03, 1e-02.") as e:
        operating_point(cal, far=1e-4)
    assert "needs at least 10000 impostor pairs" in str(e.value) and "leave out --far" in str(e.value)


def test_a_documented_calibration_gives_a_usable_default():
    """LFW-style sets: 3,000 pairs hold 1,500 impostors, which measure 1e-2 and 1e-3 but not 1e-4; the default
    operating point is then the 1e-3 threshold, not a refusal."""
    impostors = np.random.default_rng(0).uniform(-0.3, 0.6, 1500)
    fars = supported_fars(impostors.size)
    assert fars == [1e-2, 1e-3]
    thresholds = calibrate_thresholds(impostors, fars)
    op = operating_point(thresholds)
    assert op["far"] == 1e-3 and op["source"] == "calibrated"
    assert np.mean(impostors >= op["threshold"]) <= 1e-3  # the rule it was calibrated by


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1.5, -1.01, "abc"])
def test_threshold_must_be_a_finite_cosine(bad):
    with pytest.raises(ConfigError, match=r"finite number in \[-1, 1\]|is not a number"):
        operating_point({}, threshold=bad)


def test_verify_states_its_operating_point(model, tmp_path):
    a = face_like(1)
    bare = FaceAnalyzer(OneFace(), model, device="cpu")
    with pytest.raises(ConfigError) as e:
        bare.verify(a, a)
    text = str(e.value)
    assert f"facezoo calibrate {model} --bin PAIRS.bin" in text and f"--model {calibrated_path(model)}" in text
    assert "--threshold T" in text and "no operating point" in text
    r = bare.verify(a, a, threshold=0.5)
    assert r["operating_point"] == {"threshold": 0.5, "source": "--threshold"} and r["far"] is None
    dflt = write_thresholds(model, {DEFAULT_KEY: 0.8}, tmp_path / "default.pt")
    r = FaceAnalyzer(OneFace(), dflt, device="cpu").verify(a, a)
    assert r["operating_point"] == {"threshold": 0.8, "source": "model default"} and r["same"] is True
    cal = write_thresholds(model, {"1e-02": 0.2, "1e-03": 0.35}, tmp_path / "cal.pt")
    r = FaceAnalyzer(OneFace(), cal, device="cpu").verify(a, face_like(2))
    assert r["operating_point"] == {"far": 1e-3, "threshold": 0.35, "source": "calibrated"}
    assert r["threshold"] == 0.35 and r["far"] == 1e-3 and r["same"] == (r["similarity"] >= 0.35)
    with pytest.raises(ConfigError, match="not both"):
        bare.verify(a, a, far=1e-3, threshold=0.5)


def test_identify_answers_unknown_below_the_operating_point(model, tmp_path):
    fa = FaceAnalyzer(OneFace(), model, device="cpu")
    g = Gallery.open(tmp_path / "g.db")
    for seed, name in enumerate(["ann", "bob"]):
        fa.enroll(g, name, [face_like(40 + seed)])
    bob = fa.analyze(face_like(41))[0].normed_embedding
    stranger = face_like(99)
    s_best = max(
        float(fa.analyze(stranger)[0].normed_embedding @ fa.analyze(face_like(40 + i))[0].normed_embedding)
        for i in range(2)
    )
    t = (s_best + 1.0) / 2  # above the stranger's best match, below bob's own score (1)
    assert float(bob @ bob) > t > s_best
    cal = FaceAnalyzer(OneFace(), write_thresholds(model, {"1e-02": t}, tmp_path / "cal.pt"), device="cpu")
    (known,) = cal.identify(face_like(41), g)
    assert known["identity"] == "bob" and known["unknown"] is False and known["matches"][0]["identity"] == "bob"
    assert known["operating_point"] == {"far": 1e-2, "threshold": t, "source": "calibrated"}
    (unknown,) = cal.identify(stranger, g)
    assert unknown["identity"] is None and unknown["unknown"] is True and unknown["matches"] == []
    (ranked,) = cal.identify(stranger, g, threshold=-1)  # every candidate
    assert len(ranked["matches"]) == 2 and ranked["matches"][0]["score"] == pytest.approx(s_best, abs=1e-5)
    with pytest.raises(ConfigError, match="no operating point"):
        fa.identify(stranger, g)  # uncalibrated, no default: the same rule as verify
    g.close()


# ---------------------------------------------------------------------- channel order


def test_bgr_arrays_with_channel_order(model, tmp_path):
    fa = FaceAnalyzer(OneFace(), model, device="cpu")
    rgb = face_like(3)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    want = fa.analyze(rgb)[0]
    got = fa.analyze(bgr, channel_order="BGR")[0]
    np.testing.assert_array_equal(got.crop, want.crop)  # crops are RGB whatever the input's order
    np.testing.assert_array_equal(got.embedding, want.embedding)
    assert not np.array_equal(fa.analyze(bgr)[0].embedding, want.embedding)  # BGR read as RGB is another image
    r = fa.verify(rgb, bgr, threshold=0.5, channel_order="BGR")  # applies to both arrays
    assert r["similarity"] < 1 - 1e-4 or np.array_equal(rgb, bgr)
    assert fa.verify(bgr, bgr, threshold=0.99, channel_order="BGR")["same"] is True
    g = Gallery.open(tmp_path / "g.db")
    fa.enroll(g, "ann", [bgr], channel_order="BGR")
    (r,) = fa.identify(rgb, g, threshold=0.999)
    assert r["identity"] == "ann" and r["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    (r,) = fa.identify(bgr, g, threshold=0.999, channel_order="BGR")
    assert r["identity"] == "ann"
    g.close()
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)  # files are decoded to RGB: channel_order concerns arrays only
    np.testing.assert_array_equal(fa.analyze(path, channel_order="BGR")[0].embedding, want.embedding)
    with pytest.raises(ConfigError, match="channel_order must be 'RGB' or 'BGR'"):
        fa.analyze(rgb, channel_order="bgr")


# ---------------------------------------------------------------------- decoding: one decoder everywhere


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_exif_orientation_applies_to_paths_bytes_and_pil_images(tmp_path):
    stored = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3  # 4 rows x 6 columns, all distinct
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: the stored image must be turned 90 degrees clockwise to be seen
    data = _png(Image.fromarray(stored), exif=exif)
    upright = np.rot90(stored, k=-1)  # clockwise: 6 rows x 4 columns
    path = tmp_path / "rotated.png"
    path.write_bytes(data)
    for image in (path, data, Image.open(io.BytesIO(data))):
        np.testing.assert_array_equal(load_image(image), upright)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 65535], [32896, 1000, 65280]], np.uint16)  # 0, 1, 255, 128, 4 (3.9), 254
    im16 = Image.fromarray(values)  # mode I;16
    want = np.repeat(np.array([[0, 1, 255], [128, 4, 254]], np.uint8)[..., None], 3, axis=2)
    for image in (im16, _png(im16), Image.open(io.BytesIO(_png(im16)))):
        np.testing.assert_array_equal(load_image(image), want)


def test_pil_images_obey_the_format_list_and_the_pixel_budget(monkeypatch):
    ppm = b"P6 2 2 255\n" + bytes(range(12))  # a format facezoo does not accept (Pillow would decode it)
    with pytest.raises(DataError, match="PPM images are not accepted"):
        load_image(Image.open(io.BytesIO(ppm)))
    with pytest.raises(DataError, match="cannot decode image"):
        load_image(ppm)  # as bytes: the PPM plugin never runs
    monkeypatch.setenv("FACEZOO_MAX_PIXELS", "100")
    with pytest.raises(DataError, match="exceeds the budget of 100 pixels"):
        load_image(Image.fromarray(np.zeros((20, 20, 3), np.uint8)))
    assert load_image(Image.fromarray(np.zeros((10, 10, 3), np.uint8))).shape == (10, 10, 3)


# ---------------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_enroll_folder_shows_progress_on_a_terminal_only(model, tmp_path, monkeypatch):
    from facezoo.progress import quiet

    root = tmp_path / "people"
    for i, name in enumerate(["ann", "ben"]):
        (root / name).mkdir(parents=True)
        for j in range(3):
            Image.fromarray(face_like(60 + 3 * i + j)).save(root / name / f"{j}.png")
    fa = FaceAnalyzer(OneFace(), model, device="cpu")
    for stream, silenced, shown in [
        (Terminal(), False, True),
        (Terminal(), True, False),
        (io.StringIO(), False, False),
    ]:
        monkeypatch.setattr("sys.stderr", stream)
        with quiet(silenced):
            r = fa.enroll_folder(tmp_path / f"g{len(stream.getvalue())}{silenced}{shown}.db", root, replace=True)
        assert (r.identities, r.images) == (2, 6)
        text = stream.getvalue()
        assert ("enroll:" in text and "/6 [" in text and "img/s" in text) == shown, text
