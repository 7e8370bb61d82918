"""The command line end to end on a tiny synthetic set, and its errors for bad input."""

import json

import pytest

from facezoo.cli import main


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    assert (
        main(
            [
                "data",
                "synth",
                str(out),
                "--identities",
                "12",
                "--images-per-identity",
                "8",
                "--val-identities",
                "6",
                "--image-size",
                "32",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    return out


def train_args(data, run, *extra):
    return [
        "train",
        "configs/synthetic_demo.yaml",
        f"output={run}",
        f"data.train={data}/train",
        f"data.val=[{data}/synth_ver.bin]",
        "model.input_size=32",
        "batch_size=16",
        "epochs=2",
        "log_every=2",
        "data.num_workers=0",
        *extra,
    ]


def test_synth_train_resume_eval(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, "--max-steps", "3")) == 0
    assert main(train_args(tiny_data, run, "--resume")) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 3" in out and "verification at step 12" in out
    assert (run / "config.yaml").exists() and (run / "metrics.jsonl").exists() and (run / "tb").is_dir()

    assert (
        main(["eval", str(run / "model.pt"), "--bin", str(tiny_data / "synth_ver.bin"), "--out", str(tmp_path / "ev")])
        == 0
    )
    table = capsys.readouterr().out
    assert "synth_ver" in table.lower().replace("-", "_") or "synth" in table.lower()
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    (model_results,) = results.values()
    (acc,) = [r["accuracy"] for r in model_results.values()]
    assert 0.0 <= acc <= 1.0 and (tmp_path / "ev" / "roc.png").stat().st_size > 1000


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ir50" in out and "arcface" in out and "adaface" in out and "poly" in out
    (detectors,) = [line.split()[1:] for line in out.splitlines() if line.startswith("detectors:")]
    assert {"mtcnn", "retinaface", "scrfd"} <= set(detectors)  # tests may register extra ones


def test_bad_input_exits_2_with_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    cases = [
        (["train", "configs/synthetic_demo.yaml", "optim.lrr=1"], "Did you mean 'optim.lr'"),
        (["train", "configs/synthetic_demo.yaml", f"data.train={tmp_path}/missing"], "missing"),
        (["train", str(tmp_path / "nope.yaml")], "recipe not found"),
        (["eval", str(tmp_path / "nope.pt"), "--bin", "x.bin"], "nope.pt"),
    ]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases.append((["eval", str(tmp_path / "junk.pt"), "--bin", "x.bin"], "junk.pt"))
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (argv, err)
