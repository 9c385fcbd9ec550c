"""``sparsetrain train``: both modes on tiny synthetic data sets (.npz and image folders),
checkpoints and resuming, and every user mistake ending in one line on stderr and exit 2."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import sparsetrain as st
from sparsetrain import surgery
from sparsetrain.cli import CLIError, main
from sparsetrain.cli.checkpoint_io import atomic_write
from sparsetrain.models import MODELS, small_cnn
from sparsetrain.surgery import sparsify_like

pytestmark = pytest.mark.usefixtures("malloc_calls")  # see conftest

CLASSES = ("cat", "dog", "eel")


# -- helpers ------------------------------------------------------------------------------------


def cli(*argv):
    """Exit status of `sparsetrain train ...`, whether main returns it or argparse exits."""
    try:
        return main(["train", *map(str, argv)])
    except SystemExit as e:
        return e.code


def easy_images(n=240, seed=0):
    """(x, y): n 8x8 uint8 images of 3 classes that differ in where they are bright."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.2, 0.1, (n, 8, 8))
    x[y == 0, :, :4] += 0.6  # left half
    x[y == 1, :4, :] += 0.6  # top half
    x[np.ix_(y == 2, range(8), range(8))] += 0.8 * np.eye(8)  # diagonal
    return (np.clip(x, 0, 1) * 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "easy.npz"
    x, y = easy_images()
    np.savez(path, x=x, y=y)
    return path


def write_folder(root, per_class=6, mode="RGB", sizes=None):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = (rng.random((8, 8, 3)) * 60).astype(np.uint8)
            a[..., c] += 150
            im = Image.fromarray(a).convert(mode)
            if sizes:
                im = im.resize(sizes[(c + i) % len(sizes)])
            im.save(root / name / f"{i}.png")
    return root


def epoch_lines(out):
    return re.findall(
        r"^epoch (\d+)/(\d+)  loss ([\d.]+)  train acc ([\d.]+)%  val acc "
        r"([\d.]+%|-)  sparsity ([\d.]+)  [\d.]+ s$",
        out,
        re.M,
    )


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def dense_weights(ckpt):
    """The checkpoint's model as plain torch tensors (sparse layers densified)."""
    a = ckpt["args"]
    model = sparsify_like(MODELS[a["model"]](a["num_classes"], a["in_channels"]), ckpt["model"])
    return st.densify(model).state_dict()


def sparsity_of(ckpt, layer):
    """Share of zeros of one layer's weight in a checkpoint."""
    return float((dense_weights(ckpt)[layer + ".weight"] == 0).float().mean())


def assert_one_line_error(capsys, code, *words):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sparsetrain train: error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    st.set_num_threads(None)
    torch.set_num_threads(before)


@pytest.fixture
def fixed_timing(monkeypatch):
    """Make sparsify's decisions deterministic and instant: sparse convolutions are
    'faster', the dense hidden linear layer too (so it stays dense with a held mask)."""

    def fake(module, x, repeats=5):
        if isinstance(module, (st.SparseConv2d, nn.Linear)):
            return 1.0
        return 2.0

    monkeypatch.setattr(surgery, "_time_step", fake)


# -- training -----------------------------------------------------------------------------------


def test_scratch_mode_learns_prunes_and_writes_checkpoints(npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        cli(
            "--data",
            npz,
            "--mode",
            "scratch",
            "--epochs",
            4,
            "--batch-size",
            16,
            "--out",
            out,
            "--threads",
            1,
        )
        == 0
    )
    stdout = capsys.readouterr().out
    lines = epoch_lines(stdout)
    assert [(e, n) for e, n, *_ in lines] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")]
    assert float(lines[-1][4].rstrip("%")) > 80.0  # chance is 33%
    assert float(lines[0][5]) == 0.0 < float(lines[-1][5])  # dense first epoch, then pruned
    assert "gradual pruning to sparsity 0.90" in stdout
    assert f"checkpoints: {out / 'last.pt'} (epoch 4)" in stdout
    assert sorted(os.listdir(out)) == ["best.pt", "last.pt"]  # no temporary files left

    ckpt = load(out / "last.pt")
    assert ckpt["epoch"] == 4 and ckpt["format"] == "sparsetrain-train"
    a = ckpt["args"]
    assert (a["model"], a["num_classes"], a["in_channels"], a["input_size"], a["mode"]) == (
        "small-cnn",
        3,
        1,
        [8, 8],
        "scratch",
    )
    assert ckpt["classes"] == ["0", "1", "2"]
    assert ckpt["pruner"]["state"]["step_count"] == 4 * 12  # 192 train images / batch 16
    assert ckpt["best_acc"] == max(h["val_acc"] for h in ckpt["history"])
    # the convolutions past the first became sparse modules at the final sparsity
    for layer in ("features.3", "features.7", "features.10", "features.14"):
        assert layer + ".col_idx" in ckpt["model"]
        assert sparsity_of(ckpt, layer) == pytest.approx(0.9, abs=0.01)
    assert "features.0.weight" in ckpt["model"]  # first conv and classifier stay dense
    assert sparsity_of(ckpt, "classifier.3") == 0.0
    assert set(ckpt["optimizer"]) == {"state", "param_groups"}


def test_transfer_from_a_dense_init_prunes_sparsifies_and_holds_masks(npz, tmp_path, capsys):
    torch.manual_seed(3)
    init = tmp_path / "dense.pt"
    torch.save(small_cnn(3, 1).state_dict(), init)
    out = tmp_path / "run"
    # real timing here: sparsify decides per layer on the data's shapes
    assert (
        cli(
            "--data",
            npz,
            "--init",
            init,
            "--epochs",
            3,
            "--batch-size",
            16,
            "--optimizer",
            "sgd",
            "--lr",
            0.05,
            "--out",
            out,
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert f"--init: loaded {init}" in stdout
    assert "pruned 5 layers to sparsity 0.90" in stdout and " layers made sparse" in stdout
    lines = epoch_lines(stdout)
    assert len(lines) == 3 and float(lines[-1][4].rstrip("%")) > 80.0
    ckpt = load(out / "last.pt")
    assert ckpt["args"]["mode"] == "transfer" and ckpt["args"]["optimizer"] == "sgd"
    assert ckpt["pruner"] is None
    for layer in ("features.3", "features.7", "features.10", "features.14", "classifier.1"):
        assert sparsity_of(ckpt, layer) == pytest.approx(0.9, abs=0.002)
    assert sparsity_of(ckpt, "features.0") == 0.0


def test_pruned_layers_that_stay_dense_keep_their_zeros(npz, tmp_path, capsys, fixed_timing):
    out = tmp_path / "run"
    assert (
        cli(
            "--data",
            npz,
            "--mode",
            "transfer",
            "--epochs",
            2,
            "--batch-size",
            16,
            "--sparsity",
            0.8,
            "--out",
            out,
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert "no --init: transfer starts from random weights" in stdout
    assert "1 dense with their zeros held" in stdout
    ckpt = load(out / "last.pt")
    assert ckpt["masked"] == ["classifier.1"]
    assert "classifier.1.weight" in ckpt["model"] and "features.3.col_idx" in ckpt["model"]
    w = ckpt["model"]["classifier.1.weight"]
    assert float((w == 0).float().mean()) == pytest.approx(0.8, abs=0.002)  # trained, still 80%


def test_prune_all_includes_first_conv_and_classifier(npz, tmp_path, capsys, fixed_timing):
    out = tmp_path / "run"
    assert (
        cli(
            "--data",
            npz,
            "--mode",
            "transfer",
            "--prune-all",
            "--epochs",
            1,
            "--batch-size",
            16,
            "--out",
            out,
        )
        == 0
    )
    assert "pruned 7 layers" in capsys.readouterr().out
    ckpt = load(out / "last.pt")
    assert sparsity_of(ckpt, "features.0") == pytest.approx(0.9, abs=0.01)
    assert sparsity_of(ckpt, "classifier.3") == pytest.approx(0.9, abs=0.01)


def test_init_with_another_class_count_gets_a_fresh_classifier(npz, tmp_path, capsys, fixed_timing):
    # a sparse checkpoint of this command on 10 classes as starting point
    model = small_cnn(10, 1)
    st.magnitude_prune(model, 0.5, scope="layer")
    st.sparsify(model, min_sparsity=0.4, only_if_faster=False)
    init = tmp_path / "ten.pt"
    torch.save({"state_dict": model.state_dict()}, init)
    assert (
        cli(
            "--data",
            npz,
            "--init",
            init,
            "--epochs",
            1,
            "--batch-size",
            16,
            "--out",
            tmp_path / "run",
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert "classifier (classifier.3) has 10 outputs and the data 3 classes" in stdout
    assert len(epoch_lines(stdout)) == 1


def test_val_fraction_zero_writes_no_best(npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        cli("--data", npz, "--val-fraction", 0, "--epochs", 1, "--sparsity", 0, "--out", out) == 0
    )
    stdout = capsys.readouterr().out
    assert epoch_lines(stdout)[0][4] == "-" and "no best.pt" in stdout
    assert os.listdir(out) == ["last.pt"]


# -- resuming -----------------------------------------------------------------------------------


def test_resume_continues_with_the_next_epoch_and_the_same_weights(
    npz, tmp_path, capsys, fixed_timing
):
    common = ("--data", npz, "--mode", "transfer", "--batch-size", 16, "--seed", 5)
    assert cli(*common, "--epochs", 3, "--out", tmp_path / "straight") == 0
    assert cli(*common, "--epochs", 2, "--out", tmp_path / "split") == 0
    capsys.readouterr()
    # --resume takes the checkpoint's folder and settings; --epochs extends the run
    assert cli("--data", npz, "--resume", tmp_path / "split", "--epochs", 3) == 0
    stdout = capsys.readouterr().out
    assert f"resuming {tmp_path / 'split' / 'last.pt'}: epoch 2 of 3 done" in stdout
    assert "continuing with epoch 3" in stdout
    assert [e for e, *_ in epoch_lines(stdout)] == ["3"]
    a, b = load(tmp_path / "straight" / "last.pt"), load(tmp_path / "split" / "last.pt")
    assert b["epoch"] == 3 and len(b["history"]) == 3
    wa, wb = dense_weights(a), dense_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert b["masked"] == a["masked"] == ["classifier.1"]

    # all epochs done: nothing to do, said so (options equal to the run's are fine)
    assert (
        cli(
            "--data",
            npz,
            "--resume",
            tmp_path / "split" / "last.pt",
            "--channels",
            1,
            "--image-size",
            8,
            "--model",
            "small-cnn",
        )
        == 0
    )
    assert "all 3 epochs are done" in capsys.readouterr().out


def test_resume_scratch_restores_the_pruning_schedule(npz, tmp_path, capsys):
    common = ("--data", npz, "--mode", "scratch", "--batch-size", 32, "--optimizer", "adam")
    out = tmp_path / "run"
    assert cli(*common, "--epochs", 1, "--out", out) == 0
    first = load(out / "last.pt")
    capsys.readouterr()
    assert (
        cli("--data", npz, "--resume", out / "last.pt", "--epochs", 3, "--out", tmp_path / "more")
        == 0
    )
    stdout = capsys.readouterr().out
    assert [e for e, *_ in epoch_lines(stdout)] == ["2", "3"]
    ckpt = load(tmp_path / "more" / "last.pt")
    steps = first["pruner"]["state"]["step_count"]
    assert ckpt["pruner"]["state"]["step_count"] == 3 * steps
    assert ckpt["pruner"]["end_step"] == first["pruner"]["end_step"]  # the schedule is kept
    assert ckpt["args"]["optimizer"] == "adam" and ckpt["args"]["epochs"] == 3
    assert float(epoch_lines(stdout)[-1][5]) > 0.5


def test_resume_errors(npz, tmp_path, capsys, fixed_timing):
    out = tmp_path / "run"
    assert (
        cli("--data", npz, "--mode", "transfer", "--epochs", 1, "--batch-size", 16, "--out", out)
        == 0
    )
    capsys.readouterr()
    last = out / "last.pt"

    # a data set with another number of classes
    x, y = easy_images()
    other = tmp_path / "four.npz"
    np.savez(other, x=x, y=np.where(np.arange(len(y)) % 7 == 0, 3, y))
    assert_one_line_error(
        capsys, cli("--data", other, "--resume", last), "4 classes", "trained on 3"
    )
    # settings that define the run cannot change
    assert_one_line_error(
        capsys,
        cli("--data", npz, "--resume", last, "--model", "resnet18"),
        "--model resnet18 differs",
    )
    assert_one_line_error(
        capsys, cli("--data", npz, "--resume", last, "--init", last), "exclude each other"
    )
    # damaged, foreign and missing checkpoints
    blob = last.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all\n" * 20)
    torch.save(small_cnn(3, 1).state_dict(), tmp_path / "weights.pt")
    torch.save(small_cnn(3, 1), tmp_path / "pickled.pt")
    assert_one_line_error(
        capsys, cli("--data", npz, "--resume", tmp_path / "truncated.pt"), "cannot read it"
    )
    assert_one_line_error(
        capsys, cli("--data", npz, "--resume", tmp_path / "garbage.pt"), "cannot read it"
    )
    assert_one_line_error(
        capsys,
        cli("--data", npz, "--resume", tmp_path / "weights.pt"),
        "not a checkpoint of sparsetrain train",
    )
    assert_one_line_error(
        capsys, cli("--data", npz, "--resume", tmp_path / "pickled.pt"), "state_dict()"
    )
    assert_one_line_error(
        capsys, cli("--data", npz, "--resume", tmp_path / "nope.pt"), "no such checkpoint"
    )
    # a checkpoint whose model state was damaged
    ckpt = load(last)
    ckpt["model"]["features.3.col_idx"] = ckpt["model"]["features.3.col_idx"].flip(0)
    torch.save(ckpt, tmp_path / "bad_index.pt")
    assert_one_line_error(
        capsys,
        cli("--data", npz, "--resume", tmp_path / "bad_index.pt"),
        "model state does not fit",
    )
    # an existing run is not overwritten by accident
    assert_one_line_error(capsys, cli("--data", npz, "--out", out), "--overwrite")
    assert load(last)["epoch"] == 1


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_write(path, b"old checkpoint")

    def crash(*args):
        raise KeyboardInterrupt  # the process dies between writing and renaming

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new checkpoint")
    assert path.read_bytes() == b"old checkpoint" and os.listdir(tmp_path) == ["last.pt"]

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CLIError, match="No space left"):
        atomic_write(path, b"new checkpoint")
    assert path.read_bytes() == b"old checkpoint" and os.listdir(tmp_path) == ["last.pt"]


# -- image folders ------------------------------------------------------------------------------


def test_image_folder_rgb_and_grayscale(tmp_path, capsys):
    rgb = write_folder(tmp_path / "rgb")
    (rgb / "cat" / "notes.txt").write_text("not an image")
    assert cli("--data", rgb, "--epochs", 1, "--batch-size", 4, "--out", tmp_path / "a") == 0
    stdout = capsys.readouterr().out
    assert "18 images 3x8x8, 3 classes (cat, dog, eel)" in stdout
    assert "1 other files skipped" in stdout and len(epoch_lines(stdout)) == 1
    ckpt = load(tmp_path / "a" / "last.pt")
    assert ckpt["classes"] == list(CLASSES) and ckpt["args"]["in_channels"] == 3

    gray = write_folder(tmp_path / "gray", mode="L")
    assert cli("--data", gray, "--epochs", 1, "--batch-size", 4, "--out", tmp_path / "b") == 0
    assert "18 images 1x8x8" in capsys.readouterr().out  # inferred: all grayscale
    assert (
        cli(
            "--data",
            gray,
            "--epochs",
            1,
            "--batch-size",
            4,
            "--channels",
            3,
            "--image-size",
            12,
            "--out",
            tmp_path / "c",
        )
        == 0
    )
    assert "18 images 3x12x12" in capsys.readouterr().out


def test_image_folder_with_mixed_sizes_needs_image_size(tmp_path, capsys):
    data = write_folder(tmp_path / "mixed", sizes=[(8, 8), (10, 7)])
    assert_one_line_error(
        capsys, cli("--data", data, "--out", tmp_path / "a"), "different sizes", "--image-size"
    )
    assert (
        cli(
            "--data",
            data,
            "--image-size",
            8,
            "--epochs",
            1,
            "--batch-size",
            4,
            "--out",
            tmp_path / "b",
        )
        == 0
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_names_the_file(tmp_path, capsys, damage):
    data = write_folder(tmp_path / "imgs")
    bad = data / "dog" / "broken.png"
    good = (data / "dog" / "0.png").read_bytes()
    bad.write_bytes(b"this is not a png" if damage == "garbage" else good[: len(good) // 2])
    assert_one_line_error(
        capsys, cli("--data", data, "--out", tmp_path / "a"), str(bad), "cannot read image"
    )


def test_bad_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(capsys, cli("--data", tmp_path / "empty"), "no class subfolders")
    one = write_folder(tmp_path / "one")
    for name in CLASSES[1:]:
        for f in (one / name).iterdir():
            f.unlink()
        (one / name).rmdir()
    assert_one_line_error(capsys, cli("--data", one), "only one class")
    (one / "void").mkdir()
    assert_one_line_error(capsys, cli("--data", one), "no images in class folder 'void'")


def test_missing_pillow_is_one_line(tmp_path, capsys, monkeypatch):
    data = write_folder(tmp_path / "imgs")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL raises ImportError
    assert_one_line_error(capsys, cli("--data", data), "pip install sparsetrain[cli]")


# -- user mistakes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epochs", "-1"], ["--epochs", "positive integer"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--sparsity", "1"], ["--sparsity", "[0, 1)"]),
        (["--sparsity", "-0.1"], ["--sparsity"]),
        (["--sparsity", "lots"], ["--sparsity"]),
        (["--model", "vgg"], ["--model", "invalid choice"]),
        (["--optimizer", "lion"], ["--optimizer"]),
        (["--lr", "0"], ["--lr", "positive number"]),
        (["--lr", "nan"], ["--lr"]),
        (["--batch-size", "abc"], ["--batch-size"]),
        (["--batch-size", "1"], ["--batch-size must be at least 2"]),
        (["--val-fraction", "1"], ["--val-fraction"]),
        (["--seed", "-3"], ["--seed"]),
        (["--channels", "2"], ["--channels"]),
        (["--mode", "scratch", "--init", "x.pt"], ["--init is for --mode transfer"]),
        (["--init", "missing.pt"], ["--init missing.pt: no such file"]),
    ],
)
def test_bad_options_are_one_line(npz, tmp_path, capsys, args, words):
    assert_one_line_error(capsys, cli("--data", npz, "--out", tmp_path / "o", *args), *words)


def test_missing_data_option_is_one_line(capsys):
    assert_one_line_error(capsys, cli("--epochs", 2), "required", "--data")


def test_bad_data_paths(tmp_path, capsys):
    assert_one_line_error(capsys, cli("--data", tmp_path / "nope"), "no such file or folder")
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(capsys, cli("--data", tmp_path / "notes.txt"), "expected a folder")
    (tmp_path / "fake.npz").write_text("hello")
    assert_one_line_error(capsys, cli("--data", tmp_path / "fake.npz"), "not a valid .npz")


x8, y8 = easy_images(30)


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x": x8}, ["no array 'y'", "has: x"]),
        ({"images": x8, "y": y8}, ["no array 'x'"]),
        ({"x": x8, "y": y8[:-1]}, ["30 images but y has 29 labels"]),
        ({"x": x8, "y": y8 - 1}, ["negative labels"]),
        ({"x": x8, "y": y8 + 0.5}, ["integer class labels"]),
        ({"x": x8, "y": y8.astype(str)}, ["integer class labels"]),
        ({"x": x8, "y": y8[:, None]}, ["shape (N,)"]),
        ({"x": x8, "y": np.zeros(30, int)}, ["at least 2 classes"]),
        ({"x": x8.reshape(30, 64), "y": y8}, ["x must be images"]),
        (
            {"x": np.where(np.arange(30)[:, None, None] == 7, np.nan, x8 / 255.0), "y": y8},
            ["NaN", "image 7"],
        ),
        ({"x": x8.astype(str), "y": y8}, ["x must hold integer or float"]),
        ({"x": np.array([object()] * 30), "y": y8}, ["cannot read"]),
    ],
)
def test_bad_npz_is_one_line(tmp_path, capsys, arrays, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # an object array is stored pickled: refused, never unpickled
    assert_one_line_error(capsys, cli("--data", path, "--out", tmp_path / "o"), *words)


def test_npz_layouts_and_class_names(tmp_path, capsys):
    x, y = easy_images(60)
    rgb = np.repeat(x[..., None], 3, axis=3)  # (N, H, W, C)
    np.savez(tmp_path / "nhwc.npz", x=rgb, y=y, classes=np.array(["left", "top", "diag"]))
    assert (
        cli(
            "--data",
            tmp_path / "nhwc.npz",
            "--epochs",
            1,
            "--batch-size",
            8,
            "--sparsity",
            0,
            "--out",
            tmp_path / "a",
        )
        == 0
    )
    assert "60 images 3x8x8, 3 classes (left, top, diag)" in capsys.readouterr().out
    np.savez(tmp_path / "float.npz", x=(x / 255.0).astype(np.float64)[:, None], y=y.astype(float))
    assert (
        cli(
            "--data",
            tmp_path / "float.npz",
            "--epochs",
            1,
            "--batch-size",
            8,
            "--sparsity",
            0,
            "--out",
            tmp_path / "b",
        )
        == 0
    )
    assert "60 images 1x8x8" in capsys.readouterr().out


def test_divergence_is_one_line_and_keeps_the_last_checkpoint(npz, tmp_path, capsys):
    assert_one_line_error(
        capsys,
        cli(
            "--data",
            npz,
            "--optimizer",
            "sgd",
            "--lr",
            1e30,
            "--sparsity",
            0,
            "--out",
            tmp_path / "o",
        ),
        "training diverged",
        "--lr",
    )


# -- pieces -------------------------------------------------------------------------------------


def test_small_cnn_takes_any_small_image_size():
    assert MODELS["small-cnn"] is small_cnn
    for size in (4, 8, 13, 32, 63):
        assert small_cnn(5, 3)(torch.randn(2, 3, size, size)).shape == (2, 5)


def test_sparsify_like_swaps_both_ways_and_loads():
    torch.manual_seed(0)
    src = small_cnn(3, 1)
    st.magnitude_prune(src, 0.9, scope="layer", exclude=["features.0", "classifier.3"])
    st.sparsify(src, min_sparsity=0.8, only_if_faster=False, include=["features.3", "classifier.1"])
    src.eval()
    x = torch.randn(2, 1, 8, 8)
    dst = sparsify_like(small_cnn(3, 1), src.state_dict()).eval()
    assert isinstance(dst.features[3], st.SparseConv2d)
    assert dst.features[3].nnz == src.features[3].nnz
    assert isinstance(dst.classifier[1], st.SparseLinear) and type(dst.features[7]) is nn.Conv2d
    torch.testing.assert_close(dst(x), src(x))
    dense = small_cnn(3, 1).state_dict()
    back = sparsify_like(dst, dense)  # sparse -> dense
    assert type(back.features[3]) is nn.Conv2d
    torch.testing.assert_close(back.features[3].weight, dense["features.3.weight"])
    layer = sparsify_like(nn.Linear(512, 256), src.classifier[1].state_dict())
    assert isinstance(layer, st.SparseLinear) and layer.nnz == src.classifier[1].nnz
    with pytest.raises(RuntimeError):
        sparsify_like(small_cnn(4, 1), src.state_dict())  # strict: wrong classifier size


# -- the installed entry point ------------------------------------------------------------------


def test_python_dash_m_entry_point(npz, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsetrain",
            "train",
            "--data",
            str(npz),
            "--epochs",
            "1",
            "--sparsity",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "epoch 1/1" in ok.stdout and (tmp_path / "o" / "last.pt").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "sparsetrain", "train", "--data", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == f"sparsetrain train: error: {tmp_path / 'missing'}: no such "
        f"file or folder"
    )
    assert bad.stdout == ""
