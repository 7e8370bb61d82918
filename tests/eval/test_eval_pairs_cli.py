"""`facezoo eval --pairs NAME:ROOT`: official pair lists through the CLI, with RFW's mean and std over races."""

import json

import numpy as np
import pytest
import torch

import facezoo
from facezoo.cli import main

from .test_pairs import write_image


class MeanColour(torch.nn.Module):
    """A stand-in embedder: the mean RGB of the image plus a bias, so accuracies differ from set to set."""

    input_size = (8, 8)

    def forward(self, images):
        return images.float().mean(dim=(1, 2)) + 1.0


def make_rfw(root, race, rows):
    txt = root / "test" / "txts" / race / f"{race}_pairs.txt"
    txt.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(rows):
        a, b = f"{race[:2]}.a{i}", f"{race[:2]}.b{i}"
        write_image(root / "test" / "data" / race / a / f"{a}_0001.jpg")
        write_image(root / "test" / "data" / race / a / f"{a}_0002.jpg")
        write_image(root / "test" / "data" / race / b / f"{b}_0003.jpg")
        lines.append(f"{a}\t1\t2" if i % 2 == 0 else f"{a}\t1\t{b}\t3")
    txt.write_text("\n".join(lines) + "\n")


def test_pairs_and_rfw_summary(tmp_path, monkeypatch, capsys):
    make_rfw(tmp_path, "Asian", 20)
    make_rfw(tmp_path, "Indian", 20)
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": MeanColour())
    argv = [
        "eval",
        str(tmp_path / "m.pt"),
        "--pairs",
        f"rfw_asian:{tmp_path}",
        f"RFW_Indian:{tmp_path}",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "rfw_asian" in table.lower().replace("-", "_") and "rfw" in table.lower()
    (per_set,) = json.loads((tmp_path / "out" / "results.json").read_text()).values()
    accs = [per_set["rfw_asian"]["accuracy"], per_set["rfw_indian"]["accuracy"]]
    assert per_set["rfw"]["accuracy"] == pytest.approx(np.mean(accs))
    assert per_set["rfw"]["accuracy_std"] == pytest.approx(np.std(accs))
    assert per_set["rfw"]["races"] == {"Asian": pytest.approx(accs[0]), "Indian": pytest.approx(accs[1])}


def test_nothing_to_evaluate_and_missing_images(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "m.pt")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    make_rfw(tmp_path, "Asian", 10)
    next((tmp_path / "test" / "data" / "Asian").glob("*/*_0002.jpg")).unlink()
    assert main(["eval", str(tmp_path / "m.pt"), "--pairs", f"rfw_asian:{tmp_path}"]) == 2
    assert "_0002.jpg" in capsys.readouterr().err
