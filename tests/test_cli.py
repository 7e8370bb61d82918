"""The command line end to end on a tiny synthetic set, and its errors for bad input."""

import argparse
import json
from pathlib import Path

import pytest

import facezoo.cli as cli
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


def test_list_shows_every_registry(capsys):
    from facezoo.cli.list import registries

    assert main(["list"]) == 0
    shown = {line.split(":")[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    tables = registries()
    assert set(shown) == set(tables) >= {"backbones", "heads", "schedules", "optimizers", "detectors"}
    for kind, registry in tables.items():
        assert shown[kind] == registry.names() and shown[kind], kind
        assert main(["list", kind]) == 0
        assert capsys.readouterr().out.split() == [f"{kind}:", *registry.names()]


# ---------------------------------------------------------------- every registered command

COMMANDS = cli.command_names()
# Options without help text in modules other helpers are rewriting now; strict: the mark must go once they have it.
NO_HELP_YET: set[str] = set()  # eval-ijb and eval-megaface have help for every option now


def test_every_command_module_registers_its_command():
    modules = sorted(p.stem for p in Path(cli.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(cli.MODULES) == modules  # every command module is listed, once
    assert cli.COMMANDS.names() == sorted(COMMANDS)  # and registers the command named after it, nothing else


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _without_help(parser, path):
    """'command sub --option' for every option of `parser` and its sub-commands that has no help text."""
    for action in parser._actions:
        if action.option_strings and not action.help and not isinstance(action, argparse._HelpAction):
            yield f"{path} {action.option_strings[-1]}"
    for name, sub in _subparsers(parser):
        yield from _without_help(sub, f"{path} {name}")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: facezoo {name}") and len(out.splitlines()) > 2


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="options without help")) if n in NO_HELP_YET else n
        for n in COMMANDS
    ],
)
def test_every_option_has_help_text(name):
    parser = dict(_subparsers(cli.build_parser()))[name]
    assert list(_without_help(parser, name)) == []


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
