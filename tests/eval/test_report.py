"""Report tables, JSON / CSV round trips and the ROC plot."""

import csv
import json

import numpy as np

from facezoo.eval.report import format_table, plot_roc, write_csv, write_json


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


RESULTS = {
    "ir50": {
        "lfw": {"accuracy": 0.998333, "tar_at_far": {"1e-04": {"tar": 0.9912, "far": 1e-4}}},
        "cfp_fp": {"accuracy": 0.98574},
    },
    "r100": {"lfw": {"accuracy": 0.9986666}, "agedb_30": {"accuracy": 0.98}, "my_set": {"accuracy": 0.5}},
}


def test_table_layout_and_rounding():
    lines = format_table(RESULTS).splitlines()
    assert cells(lines[0]) == ["model", "LFW", "CFP-FP", "AgeDB-30", "my_set"]  # first-seen order, published names
    assert set(lines[1]) <= set("|-")  # markdown rule
    assert cells(lines[2]) == ["ir50", "99.83", "98.57", "-", "-"]
    assert cells(lines[3]) == ["r100", "99.87", "-", "98.00", "50.00"]
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_tar_table():
    text = format_table(RESULTS, tar_far=1e-4)
    tar_lines = text.split("FAR=1e-04")[1].strip().splitlines()
    assert cells(tar_lines[0])[:2] == ["model", "LFW"]
    assert cells(tar_lines[2])[:3] == ["ir50", "99.12", "-"]


def full_results():
    rng = np.random.default_rng(0)
    return {
        "m": {
            "lfw": {
                "accuracy": 0.1 + 0.2,
                "accuracy_std": 1 / 3,
                "pairs": 6000,
                "tpr": rng.random(4),
                "fpr": np.array([0.0, 1e-4, 0.5, 1.0]),
                "metric": "euclidean",
                "tar_at_far": {"1e-03": {"tar": np.float64(0.7), "far": 9e-4}},
            }
        },
    }


def test_json_round_trip(tmp_path):
    res = full_results()
    write_json(tmp_path / "r.json", res)
    back = json.loads((tmp_path / "r.json").read_text())["m"]["lfw"]
    src = res["m"]["lfw"]
    assert back["accuracy"] == src["accuracy"] and back["accuracy_std"] == src["accuracy_std"]  # exact floats
    assert back["tpr"] == src["tpr"].tolist() and back["pairs"] == 6000
    assert back["tar_at_far"]["1e-03"] == {"tar": 0.7, "far": 9e-4}


def test_csv_round_trip(tmp_path):
    res = full_results()
    write_csv(tmp_path / "r.csv", res)
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["benchmark"], row["metric"]) == ("m", "lfw", "euclidean")
    assert float(row["accuracy"]) == 0.1 + 0.2 and int(row["pairs"]) == 6000
    assert float(row["tar_at_far.1e-03.tar"]) == 0.7
    assert "tpr" not in row  # arrays stay in the JSON


def test_roc_png(tmp_path):
    fpr = np.array([0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0])
    curves = {"a lfw": (fpr, np.sqrt(fpr)), "b lfw": (fpr, fpr)}
    plot_roc(tmp_path / "roc.png", curves)
    data = (tmp_path / "roc.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert not list(tmp_path.glob(".roc.png.*"))  # no temporary file left behind
