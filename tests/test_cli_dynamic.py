"""``sparsetrain train --mode rigl | set``: sparse from the first epoch, connections moving,
checkpoints that resume the schedule exactly where it was."""

import pytest
import torch

# helpers and the npz fixture shared with the main CLI tests
from test_cli_train import cli, epoch_lines, load, npz  # noqa: F401

pytestmark = pytest.mark.usefixtures("malloc_calls")  # see conftest


def sparse_layers(state):
    return sorted(k[: -len(".col_idx")] for k in state if k.endswith(".col_idx"))


@pytest.mark.parametrize("mode", ["rigl", "set"])
def test_dynamic_modes_train_sparse_from_the_start(npz, tmp_path, capsys, mode):
    out = tmp_path / "run"
    common = ("--data", npz, "--mode", mode, "--batch-size", 16, "--threads", 1)
    assert cli(*common, "--epochs", 3, "--out", out) == 0
    stdout = capsys.readouterr().out
    lines = epoch_lines(stdout)
    assert f"{mode}: " in stdout and "layers sparse from the start (ERK" in stdout
    assert float(lines[-1][4].rstrip("%")) > 80.0  # chance is 33%
    assert all(float(line[5]) > 0.5 for line in lines)  # sparse in every epoch
    ckpt = load(out / "last.pt")
    dyn = ckpt["dynamic"]
    assert dyn["method"] == mode and dyn["state"]["step_count"] == 3 * 12
    assert dyn["end_step"] == (3 * 3 * 12) // 4
    assert sparse_layers(ckpt["model"]) == sorted(dyn["state"]["layers"])
    assert "features.0" not in dyn["state"]["layers"]  # the first conv and classifier: dense

    # Resuming an earlier checkpoint of the run (best.pt) continues its schedule exactly.
    best = load(out / "best.pt")
    assert best["epoch"] < 3
    assert cli("--data", npz, "--resume", out / "best.pt", "--out", tmp_path / "again") == 0
    resumed = load(tmp_path / "again" / "last.pt")
    assert resumed["dynamic"]["state"] == ckpt["dynamic"]["state"]
    for key, v in ckpt["model"].items():
        assert torch.equal(resumed["model"][key], v), key


def test_init_is_refused_in_dynamic_modes(npz, tmp_path, capsys):
    assert cli("--data", npz, "--mode", "rigl", "--init", tmp_path / "x.pt") == 2
    assert "--init is for --mode transfer (rigl mode" in capsys.readouterr().err


def test_a_damaged_schedule_is_refused(npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("--data", npz, "--mode", "set", "--epochs", 1, "--out", out) == 0
    ckpt = load(out / "last.pt")
    ckpt["dynamic"]["update_every"] = 0
    torch.save(ckpt, tmp_path / "bad.pt")
    capsys.readouterr()
    assert cli("--data", npz, "--resume", tmp_path / "bad.pt") == 2
    assert "dynamic.update_every is 0, expected an integer >= 1" in capsys.readouterr().err
