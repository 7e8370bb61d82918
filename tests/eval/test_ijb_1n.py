"""IJB 1:N from the release's CSVs: readers on hand-written files, a tiny release with answers worked out by hand,
and search at a larger scale against a brute-force count."""

import time
from pathlib import Path

import numpy as np
import pytest

from facezoo.errors import ConfigError, DataError
from facezoo.eval.ijb import evaluate_1n, evaluate_ijb, evaluate_ijb_features
from facezoo.eval.ijb_meta import (
    IJB1N,
    TemplateSubjects,
    ijb_1n_paths,
    load_ijb_meta,
    read_ijb_1n,
    read_template_subjects,
    resolve_protocols,
)

HEADER = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FRAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT\n"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ readers


def test_read_template_subjects_official_layout(tmp_path):
    # One row per image; template 7 spans three rows (and a video frame), listed before template 3.
    text = HEADER + (
        "7,101,img/1.jpg,1,,10,10,50,50\n"
        "7,101,frames/2_00001.png,2,1,10,10,50,50\n"
        "3,205,img/5.jpg,5,,1,2,3,4\n"
        "7,101,img/9.jpg,9,,1,1,1,1\n"
        "\n"
    )
    ts = read_template_subjects(write(tmp_path / "ijbc_1N_gallery_G1.csv", text))
    assert ts.templates.tolist() == [7, 3] and ts.subjects.tolist() == [101, 205]


def test_read_template_subjects_finds_columns_by_name_and_takes_headerless_files(tmp_path):
    ts = read_template_subjects(write(tmp_path / "a.csv", "FILENAME,SUBJECT_ID,TEMPLATE_ID\nx.jpg,4,40\ny.jpg,5,50\n"))
    assert ts.templates.tolist() == [40, 50] and ts.subjects.tolist() == [4, 5]
    ts = read_template_subjects(write(tmp_path / "b.csv", "40,4,x.jpg\n50,5,y.jpg\n"))
    assert ts.templates.tolist() == [40, 50] and ts.subjects.tolist() == [4, 5]


@pytest.mark.parametrize(
    "text, match",
    [
        (HEADER + "1,10,a.jpg\n1,11,b.jpg\n", r"p\.csv:3: template 1 has subject 11 here but 10 on line 2"),
        (HEADER + "1,10,a.jpg\nx,10,b.jpg\n", r"p\.csv:3: TEMPLATE_ID and SUBJECT_ID must be integers"),
        (HEADER + "1,10,a.jpg\n2\n", r"p\.csv:3: expected TEMPLATE_ID and SUBJECT_ID"),
        ("NAME,ID\n1,2\n", r"p\.csv:1: expected the header TEMPLATE_ID,SUBJECT_ID"),
        (HEADER, r"p\.csv: no templates listed"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_template_subjects(write(tmp_path / "p.csv", text))


def test_missing_csv_is_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_template_subjects(tmp_path / "absent.csv")
    write(tmp_path / "meta" / "ijbb_1N_gallery_S1.csv", HEADER + "1,1,a.jpg\n")
    write(tmp_path / "meta" / "ijbb_1N_gallery_S2.csv", HEADER + "2,2,a.jpg\n")
    with pytest.raises(DataError, match=r"ijbb_1N_probe_mixed\.csv: IJB 1:N file not found.*--protocol 1:1"):
        ijb_1n_paths(tmp_path, "IJBB")
    # NIST's layout keeps the CSVs in protocols/ (IJB-B) or protocols/archive/ (IJB-C) beside meta/
    write(tmp_path / "protocols" / "archive" / "ijbb_1N_probe_mixed.csv", HEADER + "3,1,a.jpg\n")
    paths = ijb_1n_paths(tmp_path, "ijbb")
    assert list(paths) == ["S1", "S2", "probe"] and paths["probe"].parent.name == "archive"
    sets = read_ijb_1n(tmp_path, "IJBB")
    assert sets.probes.templates.tolist() == [3] and set(sets.galleries) == {"S1", "S2"}


# ------------------------------------------------------------------------------------- a release, by hand

E = np.eye(6)
# Gallery templates: one per subject, subject k's feature along e_k. Template 101 is pooled from two media and is
# along e1 only if each media is averaged first (a plain image mean would tilt it towards e6, raising probe 207).
GALLERY_G1 = {101: 1, 102: 2, 103: 3}
GALLERY_G2 = {104: 4, 105: 5}
# Probe templates (subject, feature). Scores against a gallery = the coefficients on its subjects' axes.
PROBES = {
    201: (1, 0.8 * E[0] + 0.6 * E[1]),  # G1: true 0.8 > 0.6 -> rank 1.   G2: non-mated, max 0
    202: (2, 0.6 * E[1] + 0.8 * E[2]),  # G1: true 0.6 < 0.8 -> rank 2.   G2: non-mated, max 0
    203: (3, 0.6 * E[2] + 0.8 * E[3]),  # G1: true 0.6 -> rank 1.         G2: non-mated, max 0.8
    204: (4, 0.28 * E[3] + 0.96 * E[0]),  # G2: true 0.28 -> rank 1.      G1: non-mated, max 0.96
    205: (5, 0.6 * E[4] + 0.8 * E[3]),  # G2: true 0.6 < 0.8 -> rank 2.   G1: non-mated, max 0
    206: (5, E[4]),  # G2: true 1.0 -> rank 1.                            G1: non-mated, max 0
    207: (6, 0.6 * E[0] + 0.8 * E[5]),  # subject in no gallery. G1: non-mated, max 0.6; G2: max 0
}


def make_release(root, with_pairs=False):
    """meta/ with face_tid_mid, 5-point scores, the 1:N CSVs (and a pair list); returns image embeddings."""
    images = []  # (name, template, media, feature)
    # template 101: media 1 mean = 2 e1 + e6, media 2 = e1 - e6: sum 3 e1 (the image mean would be (5 e1 + e6) / 3)
    images += [("g1a.jpg", 101, 1, 2 * E[0] + 4 * E[5]), ("g1b.jpg", 101, 1, 2 * E[0] - 2 * E[5])]
    images += [("g1c.jpg", 101, 2, E[0] - E[5])]
    images += [(f"g{t}.jpg", t, t, 5 * E[s - 1]) for t, s in {**GALLERY_G1, **GALLERY_G2}.items() if t != 101]
    images += [(f"p{t}.jpg", t, 1000 + t, 3 * f) for t, (_, f) in PROBES.items()]
    order = np.random.default_rng(0).permutation(len(images))  # the meta files need not be grouped by template
    images = [images[i] for i in order]
    meta = root / "meta"
    write(meta / "ijbc_face_tid_mid.txt", "".join(f"{n} {t} {m}\n" for n, t, m, _ in images))
    write(meta / "ijbc_name_5pts_score.txt", "".join(f"{n} 1 2 3 4 5 6 7 8 9 10 0.9\n" for n, *_ in images))
    for name, gallery in (("G1", GALLERY_G1), ("G2", GALLERY_G2)):
        rows = [f"{t},{s},{n},1,,0,0,1,1\n" for n, t, *_ in images for tt, s in gallery.items() if t == tt]
        write(meta / f"ijbc_1N_gallery_{name}.csv", HEADER + "".join(rows))
    write(
        meta / "ijbc_1N_probe_mixed.csv",
        HEADER + "".join(f"{t},{s},p{t}.jpg,1,,0,0,1,1\n" for t, (s, _) in PROBES.items()),
    )
    if with_pairs:
        write(meta / "ijbc_template_pair_label.txt", "201 101 1\n202 101 0\n206 105 1\n204 105 0\n")
    return np.array([f for *_, f in images])


def test_1n_by_hand(tmp_path):
    emb = make_release(tmp_path / "IJBC")
    meta = load_ijb_meta(tmp_path, "IJBC")  # no pair file: "all" means 1:N only
    assert meta.pairs is None and meta.sets_1n is not None
    r = evaluate_ijb(meta, emb, use_flip=False, fpirs=(0.01, 0.25, 0.5))
    assert "1:1" not in r
    n = r["1:N"]
    g1, g2 = n["galleries"]["G1"], n["galleries"]["G2"]
    assert n["num_probe_templates"] == 7 and (g1["num_gallery_templates"], g2["num_gallery_templates"]) == (3, 2)
    assert (g1["num_mated"], g1["num_nonmated"], g2["num_mated"], g2["num_nonmated"]) == (3, 4, 3, 4)
    assert g1["ranks"].tolist() == [1, 2, 1] and g2["ranks"].tolist() == [1, 2, 1]
    assert g1["cmc"] == pytest.approx({1: 2 / 3, 5: 1.0, 10: 1.0})
    np.testing.assert_allclose(g1["cmc_curve"], [2 / 3, 1, 1])  # ranks 1..3 (three gallery subjects)
    # FPIR 0.01 needs 100 non-mated searches; each gallery has 4: n/a, in each gallery and in the mean.
    reason = "n/a: needs at least 100 non-mated searches to be measured, only 4 given"
    assert g1["tpir_at_fpir"]["1e-02"]["reason"] == g2["tpir_at_fpir"]["1e-02"]["reason"] == reason
    assert n["tpir_at_fpir"]["1e-02"] == {"tpir": None, "fpir": None, "reason": reason}
    # G1 non-mated maxima: 0.96, 0.6, 0, 0. FPIR 0.25: k = 1 -> threshold 0.6 (accept >); 0.5: k = 2 ->
    # threshold 0, accepting 0.96 and 0.6 (FPIR 0.5). Mated rank-1 true scores: 0.8 and 0.6.
    t1 = g1["tpir_at_fpir"]
    assert [t1[k]["threshold"] for k in ("2.5e-01", "5e-01")] == pytest.approx([0.6, 0.0], abs=1e-12)
    assert [t1[k]["fpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([0.25, 0.5])
    assert [t1[k]["tpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([1 / 3, 2 / 3])
    # G2 non-mated maxima: 0.8, 0, 0, 0 -> thresholds 0, 0; rank-1 true scores 0.28 and 1.0.
    t2 = g2["tpir_at_fpir"]
    assert [t2[k]["threshold"] for k in ("2.5e-01", "5e-01")] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert [t2[k]["fpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([0.25, 0.25])
    assert [t2[k]["tpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([2 / 3, 2 / 3])
    # The reported figures: means over the two galleries.
    assert n["cmc"] == pytest.approx({1: 2 / 3, 5: 1.0, 10: 1.0})
    assert [n["tpir_at_fpir"][k]["tpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([1 / 2, 2 / 3])
    assert [n["tpir_at_fpir"][k]["fpir"] for k in ("2.5e-01", "5e-01")] == pytest.approx([0.25, 0.375])
    np.testing.assert_allclose(n["cmc_curve"], [2 / 3, 1])  # up to the smaller gallery's 2 subjects


def test_1n_and_1to1_share_the_template_features(tmp_path):
    emb = make_release(tmp_path, with_pairs=True)
    assert resolve_protocols(tmp_path, "IJBC") == ("1:1", "1:N")
    assert resolve_protocols(tmp_path, "IJBC", "1:1") == ("1:1",)
    r = evaluate_ijb(load_ijb_meta(tmp_path, "IJBC"), emb, use_flip=False)
    # pair scores = the probe coefficient on the gallery axis: 201.101 = 0.8, 202.101 = 0, 206.105 = 1, 204.105 = 0
    np.testing.assert_allclose(r["1:1"]["scores"], [0.8, 0, 1, 0], atol=1e-12)
    alone = evaluate_ijb_features(tmp_path, "IJBC", emb, use_flip=False)
    np.testing.assert_array_equal(alone["scores"], r["1:1"]["scores"])
    assert r["1:N"]["galleries"]["G1"]["ranks"].tolist() == [1, 2, 1]
    with pytest.raises(ConfigError, match="1:1, 1:N or all"):
        resolve_protocols(tmp_path, "IJBC", "2:N")


def test_gallery_template_without_images_names_the_csv(tmp_path):
    make_release(tmp_path)
    with open(tmp_path / "meta" / "ijbc_1N_gallery_G2.csv", "a") as f:
        f.write("999,9,x.jpg,1,,0,0,1,1\n")
    meta = load_ijb_meta(tmp_path, "IJBC")
    with pytest.raises(DataError, match=r"ijbc_1N_gallery_G2\.csv have no images.*\[999\]"):
        evaluate_ijb(meta, np.ones((len(meta.media.names), 6)), use_flip=False)


# --------------------------------------------------------------------------------------------------- scale


def test_scale_ijbc_sized_search_matches_brute_force():
    """IJB-C's sizes (3,531 gallery templates in two galleries, 19,593 probes) at 128-d, against a plain count."""
    rng = np.random.default_rng(0)
    n_sub, dim, n_probe = 3531, 128, 19593
    centres = rng.standard_normal((n_sub, dim)).astype(np.float32)
    subjects = np.arange(n_sub) + 1000
    gallery_feats = centres + 1.0 * rng.standard_normal(centres.shape).astype(np.float32)
    probe_sub = rng.integers(0, n_sub, n_probe)
    probe_feats = centres[probe_sub] + 2.0 * rng.standard_normal((n_probe, dim)).astype(np.float32)
    feats = np.concatenate([gallery_feats, probe_feats])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    tids = np.arange(feats.shape[0]) * 2 + 1
    g_ids, p_ids = tids[:n_sub], tids[n_sub:]
    sets = IJB1N(
        {"G1": TemplateSubjects(g_ids[::2], subjects[::2]), "G2": TemplateSubjects(g_ids[1::2], subjects[1::2])},
        TemplateSubjects(p_ids, subjects[probe_sub]),
        {"G1": Path("g1.csv"), "G2": Path("g2.csv"), "probe": Path("p.csv")},
    )
    start = time.perf_counter()
    r = evaluate_1n(feats, tids, sets)
    elapsed = time.perf_counter() - start
    print(f"\n1:N, 2 galleries, 3,531 templates, 19,593 probes, 128-d: {elapsed:.2f} s")
    g = r["galleries"]["G1"]
    scores = feats[n_sub:].astype(np.float64) @ feats[:n_sub:2].astype(np.float64).T
    gal_sub = subjects[::2]
    mated = np.isin(subjects[probe_sub], gal_sub)
    true = scores[mated][np.arange(mated.sum()), np.searchsorted(gal_sub, subjects[probe_sub][mated])]
    rank = 1 + (scores[mated] > true[:, None]).sum(1)
    np.testing.assert_array_equal(g["ranks"], rank)
    nonmated_max = np.sort(scores[~mated].max(1))[::-1]
    t = nonmated_max[int(0.01 * nonmated_max.size)]
    assert g["tpir_at_fpir"]["1e-02"]["threshold"] == pytest.approx(t)
    assert g["tpir_at_fpir"]["1e-02"]["tpir"] == pytest.approx(np.mean((rank == 1) & (true > t)))
    assert 0.3 < g["cmc"][1] < 1  # a task that is neither trivial nor hopeless
    assert r["cmc"][1] == pytest.approx((g["cmc"][1] + r["galleries"]["G2"]["cmc"][1]) / 2)
    assert elapsed < 10.0
