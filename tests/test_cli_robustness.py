"""`sparsetrain train` / `demo` on hostile input: labels that would make 2**40 classes, image
folders with symbolic links, 16-bit and other integer pixels, damaged checkpoints, and the
--strategy option. Every mistake is one line on stderr naming the file (and the field), exit
status 2."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

import sparsetrain as st
from sparsetrain import surgery
from sparsetrain.cli import (
    CLIError,
    build_parser,
    conv_strategies,
    main,
    set_conv_strategy,
    strategy_note,
    train_loop,
)
from sparsetrain.cli import (
    data as data_mod,
)
from sparsetrain.cli import demo as demo_cmd
from sparsetrain.models import small_cnn

# helpers and fixtures shared with the main CLI tests (fixtures work where they are imported)
from test_cli_train import (  # noqa: F401
    CLASSES,
    _restore_threads,
    assert_one_line_error,
    cli,
    easy_images,
    fixed_timing,
    load,
    npz,
    write_folder,
)

pytestmark = pytest.mark.usefixtures("malloc_calls")  # see conftest

x30, y30 = easy_images(30)


def quiet(*a):
    pass


# -- 1. labels of an .npz ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "y, words",
    [
        (np.where(y30 == 2, 1000, y30), ["has label 1000 with only 30 images"]),
        (
            np.where(y30 == 2, 20, y30),
            ["no images of label 2, 3, 4, ...", "18 of the labels 0..20"],
        ),
        (np.where(y30 == 1, 2, y30), ["no images of label 1:", "0..2"]),
        (y30 * 2, ["no images of label 1, 3:", "0..4"]),
        (np.where(y30 == 0, 30, y30), ["has label 30 with only 30 images"]),
        (np.where(y30 == 0, 7, y30).astype(np.int8), ["no images of label 0, 3, 4, ..."]),
        (y30.astype(bool), ["integer class labels", "bool"]),
        (y30.astype(np.complex64), ["integer class labels", "complex64"]),
        (np.where(y30 == 0, np.nan, y30), ["integer class labels"]),
        (np.where(y30 == 0, np.inf, y30), ["integer class labels"]),
        (y30 + 0.25, ["integer class labels"]),
        (y30[:20], ["30 images but y has 20 labels"]),
        (np.concatenate([y30, y30]), ["30 images but y has 60 labels"]),
        (y30 - 3, ["negative labels"]),
    ],
)
def test_bad_labels_are_one_line(tmp_path, capsys, y, words):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x30, y=y)
    assert_one_line_error(
        capsys,
        cli("--data", path, "--epochs", 1, "--sparsity", 0, "--out", tmp_path / "o"),
        str(path),
        *words,
    )


@pytest.mark.parametrize(
    "names, y, words",
    [
        (["a", "b", "c", "d"], y30, ["no images of label 3 ('d')"]),
        (["a", "b"], y30, ["'classes' names 2 classes but y has label 2"]),
        (["a", "b", "c"], np.where(y30 == 1, 0, y30), ["no images of label 1 ('b')"]),
    ],
)
def test_class_names_must_match_the_labels(tmp_path, capsys, names, y, words):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x30, y=y, classes=np.array(names))
    assert_one_line_error(
        capsys,
        cli("--data", path, "--epochs", 1, "--sparsity", 0, "--out", tmp_path / "o"),
        str(path),
        *words,
    )


def test_whole_float_labels_are_labels(tmp_path):
    np.savez(tmp_path / "f.npz", x=x30, y=y30.astype(np.float32))
    d = data_mod.load_dataset(tmp_path / "f.npz", say=quiet)
    assert d.y.dtype == torch.int64 and d.y.tolist() == y30.tolist()
    assert d.classes == ["0", "1", "2"]


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.integers(0, 2**62), min_size=1, max_size=40))
def test_labels_are_consecutive_or_refused(labels):
    """Any label set: either 0..K-1 all used (K classes), or one error naming a label that
    no image has, and never work proportional to the largest label."""
    y = np.array(labels, dtype=np.int64)
    used = sorted(set(labels))
    try:
        got, classes = data_mod._labels("y.npz", y, len(y), None)
    except CLIError as e:
        message = str(e)
        assert "\n" not in message and message.startswith("y.npz: ")
        assert used != list(range(len(used))) or len(used) == 1
        if len(used) > 1 and used[-1] < len(y):
            first_gap = next(i for i in range(used[-1] + 1) if i not in used)
            assert f"no images of label {first_gap}" in message
        return
    assert used == list(range(len(used))) and len(used) >= 2
    assert classes == [str(i) for i in used] and got.tolist() == labels


@pytest.mark.parametrize(
    "y, words",
    [
        (np.where(y30 == 0, 2**40, y30), ["has label 1099511627776 with only 30 images"]),
        (np.where(y30 == 0, 2**62, y30), ["has label 4611686018427387904"]),
        (np.where(y30 == 0, 2**63 + 5, y30).astype(np.uint64), ["has label 9223372036854775813"]),
        (np.where(y30 == 0, 1e300, y30), ["has label 1e+300"]),
    ],
)
def test_a_huge_label_is_refused_without_the_memory(tmp_path, y, words):
    """The reported case: one label of 2**40. Before, 2**40 class names were built (the
    process was killed), so each runs in a process that has 3 GiB of address space."""
    path = tmp_path / "huge.npz"
    np.savez(path, x=x30, y=y)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
        "from sparsetrain.cli import main; "
        f"sys.exit(main(['train', '--data', {str(path)!r}, '--out', {str(tmp_path / 'o')!r}]))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], out.stderr
    assert all(w in lines[0] for w in words), lines[0]


# -- 2. image folders with symbolic links -------------------------------------------------------


def _link(root, link, target):
    os.symlink(target, root / link)


def _hard(root, link, target):
    os.link(root / target, root / link)


def _outside(root):
    """A folder of 2 images next to the data folder (not inside it)."""
    from PIL import Image

    extra = root.parent / "extra"
    extra.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(extra / f"x{i}.png")
    return extra


# layout changes -> (images per class, or the words of the error)
LINK_CASES = {
    "loop to the data folder": (lambda r: _link(r, "cat/up", ".."), [6, 6, 6]),
    "loop to the class itself": (lambda r: _link(r, "cat/self", "."), [6, 6, 6]),
    "loop above the data folder": (lambda r: _link(r, "dog/up2", "../.."), [6, 6, 6]),
    "nested loop": (
        lambda r: ((r / "eel" / "sub").mkdir(), _link(r, "eel/sub/back", "..")),
        [6, 6, 6],
    ),
    "link into an earlier class": (
        lambda r: _link(r, "dog/up", "../cat"),
        ["reached from class 'dog'", "class 'cat'"],
    ),
    "link to an image of the same class": (lambda r: _link(r, "cat/again.png", "0.png"), [6, 6, 6]),
    "hard link in the same class": (lambda r: _hard(r, "cat/again.png", "cat/0.png"), [6, 6, 6]),
    "two links to one subfolder": (
        lambda r: (
            (r / "cat" / "sub").mkdir(),
            _hard(r, "cat/sub/s.png", "dog/0.png"),
            os.unlink(r / "dog" / "0.png"),
            _link(r, "cat/a", "sub"),
            _link(r, "cat/b", "sub"),
        ),
        [7, 5, 6],
    ),
    "link to a sibling class inside a class": (
        lambda r: _link(r, "cat/more", "../dog"),
        ["class folder 'dog'", "cat/more"],
    ),
    "link to a later sibling's subfolder": (
        lambda r: ((r / "eel" / "deep").mkdir(), _link(r, "cat/deep", "../eel/deep")),
        ["reached from class 'eel'", "class 'cat'"],
    ),
    "class folder linked to another class": (
        lambda r: _link(r, "zebra", "dog"),
        ["class folder 'zebra'", "was already read as"],
    ),
    "class folder linked to the data folder": (
        lambda r: _link(r, "all", "."),
        ["class folder 'all'", "leads back"],
    ),
    "link to an image of another class": (
        lambda r: _link(r, "cat/d.png", "../dog/0.png"),
        ["the same image as", "class 'cat'"],
    ),
    "hard link across classes": (
        lambda r: _hard(r, "eel/c.png", "cat/0.png"),
        ["the same image as", "class 'cat'"],
    ),
    "class folder linked to a folder outside": (
        lambda r: _link(r, "fox", str(_outside(r))),
        [6, 6, 6, 2],
    ),
    "link to a folder outside": (lambda r: _link(r, "cat/extra", str(_outside(r))), [8, 6, 6]),
    "broken link": (
        lambda r: _link(r, "dog/gone.png", "nothing.png"),
        ["dog/gone.png", "cannot read image"],
    ),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_symbolic_links_in_an_image_folder(tmp_path, capsys, case):
    change, expected = LINK_CASES[case]
    root = write_folder(tmp_path / "data")
    change(root)
    if isinstance(expected[0], str):
        assert_one_line_error(
            capsys, cli("--data", root, "--out", tmp_path / "o"), str(root), *expected
        )
        return
    d = data_mod.load_dataset(root, say=quiet)
    assert torch.bincount(d.y).tolist() == expected
    # never the same real file twice: distinct images (write_folder's are all different)
    assert len({bytes(img.numpy()) for img in d.x}) == len(d)
    train, val = data_mod.split(d.y, 0.2, 0)
    assert not set(train.tolist()) & set(val.tolist())


def test_a_link_loop_trains_on_each_image_once(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    os.symlink("..", root / "cat" / "up")
    assert (
        cli(
            "--data",
            root,
            "--epochs",
            1,
            "--batch-size",
            4,
            "--sparsity",
            0,
            "--out",
            tmp_path / "o",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "reading 18 images" in out and "reached again through links skipped" in out
    assert "18 images 3x8x8, 3 classes (cat, dog, eel); 15 train, 3 validation" in out


# -- 3. --strategy ------------------------------------------------------------------------------


def test_strategy_choices_are_what_sparse_conv2d_accepts():
    from sparsetrain.functional.conv_layouts import STRATEGIES
    from sparsetrain.nn import conv_plans

    choices = conv_strategies()
    assert choices[0] == "auto" and set(STRATEGIES) <= set(choices)
    assert set(choices) == set(conv_plans.CHOICES)
    for name in choices:  # each one a layer takes
        st.SparseConv2d(2, 2, 3, strategy=name)
    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("train", "demo"):
        action = next(a for a in sub[command]._actions if a.dest == "strategy")
        assert tuple(action.choices) == choices and action.default == "auto"


@pytest.mark.parametrize("command", ["train", "demo"])
def test_unknown_strategy_is_one_line(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [command, "--data", "x.npz", "--strategy", "fastest"]
            if command == "train"
            else [command, "--strategy", "fastest"]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--strategy" in err[0]


def _record_strategies(monkeypatch):
    """The strategies of the SparseConv2d layers at every validation pass."""
    seen = []
    real = train_loop.accuracy

    def accuracy(model, *args):
        seen.append([m.strategy for m in model.modules() if isinstance(m, st.SparseConv2d)])
        return real(model, *args)

    monkeypatch.setattr(train_loop, "accuracy", accuracy)
    return seen


@pytest.mark.parametrize("strategy", [s for s in conv_strategies() if s != "auto"])
def test_train_strategy_reaches_every_sparse_conv(
    npz, tmp_path, capsys, monkeypatch, fixed_timing, strategy
):
    seen = _record_strategies(monkeypatch)
    assert (
        cli(
            "--data",
            npz,
            "--mode",
            "transfer",
            "--epochs",
            1,
            "--batch-size",
            16,
            "--strategy",
            strategy,
            "--out",
            tmp_path / "t",
        )
        == 0
    )
    assert len(seen) == 1 and len(seen[0]) == 4 and set(seen[0]) == {strategy}


def test_train_strategy_in_scratch_mode_and_on_resume(npz, tmp_path, capsys, monkeypatch):
    seen = _record_strategies(monkeypatch)
    # scratch: the layers the pruner swaps mid-epoch get it too
    assert (
        cli(
            "--data",
            npz,
            "--mode",
            "scratch",
            "--epochs",
            1,
            "--batch-size",
            16,
            "--strategy",
            "plane",
            "--out",
            tmp_path / "s",
        )
        == 0
    )
    assert len(seen[-1]) == 4 and set(seen[-1]) == {"plane"}
    # a speed setting, not saved: a resumed run takes the one it is given
    assert cli("--data", npz, "--resume", tmp_path / "s", "--epochs", 2, "--strategy", "batch") == 0
    assert len(seen[-1]) == 4 and set(seen[-1]) == {"batch"}
    assert "strategy" not in load(tmp_path / "s" / "last.pt")["args"]


def test_set_conv_strategy_gives_auto_where_the_strategy_cannot_run():
    model = torch.nn.Sequential(
        st.SparseConv2d(4, 4, 3, padding=1),
        st.SparseConv2d(4, 4, 3, stride=2),
        st.SparseConv2d(4, 4, 1, stride=2),
    )  # stride 1 once subsampled
    assert set_conv_strategy(model, "direct") == ["1"]
    assert [m.strategy for m in model] == ["direct", "auto", "direct"]
    assert set_conv_strategy(model, "plane") == []
    assert [m.strategy for m in model] == ["plane"] * 3
    assert strategy_note("direct", ["1"]) == (
        "--strategy direct: 1 strided convolution cannot "
        "run it (the direct kernels are stride-1 only) "
        "and uses auto: 1"
    )


@pytest.mark.parametrize("strategy", ["plane", "direct"])
def test_demo_strategy_reaches_every_sparse_conv(capsys, monkeypatch, strategy):
    seen = []

    def train(label, model, batches, warmup, steps):
        if label == "sparse NCHW":  # (the channels_last run holds copies of the same layers)
            seen.extend(
                (m.strategy, m.kernel_size != (1, 1) and m.stride != (1, 1))
                for m in model.modules()
                if isinstance(m, st.SparseConv2d)
            )
        return {"step_s": 1.0, "losses": [1.0], "profile": {}}

    monkeypatch.setattr(demo_cmd, "_train", train)
    monkeypatch.setattr(
        surgery,
        "_time_step",  # sparse "faster": every pruned conv swapped
        lambda module, x, repeats=5: 1.0 if isinstance(module, st.SparseConv2d) else 2.0,
    )
    assert (
        main(
            [
                "demo",
                "--image-size",
                "32",
                "--batch-size",
                "2",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--strategy",
                strategy,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"sparse conv strategy {strategy}" in out
    assert len(seen) > 10
    if strategy == "direct":  # strided ones cannot run it: they use auto, and the run says so
        assert {s for s, strided in seen if not strided} == {"direct"}
        assert {s for s, strided in seen if strided} == {"auto"}
        others = sum(strided for _, strided in seen)
        assert (
            f"--strategy direct: {others} strided convolutions cannot run it (the direct "
            f"kernels are stride-1 only) and use auto: layer2.0.conv1"
        ) in out
    else:
        assert {s for s, _ in seen} == {strategy} and "--strategy" not in out


# -- 4. damaged checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_ckpt(tmp_path_factory, npz):
    """A scratch-mode checkpoint (sparse layers, Adam state, a pruning schedule)."""
    out = tmp_path_factory.mktemp("scratch")
    with pytest.MonkeyPatch.context() as mp:
        import sparsetrain._runtime

        mp.setattr(sparsetrain._runtime, "keep_freed_memory", lambda enable=True: True)
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(npz),
                    "--mode",
                    "scratch",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "16",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    return load(out / "last.pt")


NAN, INF = float("nan"), float("inf")
BAD_FIELDS = {  # field -> bad values; every one refused by name
    "format_version": [0, -3, True, 99, "1", None],
    "epoch": [-3, True, 1.5, "1", None],
    "val_acc": [-1, 101, "high", NAN, True],
    "best_acc": [-0.5, 100.5, "x", INF],
    "best_epoch": [0, -1, True, 99, "1"],
    "history": [3, "x", [1, 2], None],
    "classes": [7, "abc", [1, 2, 3], ["a", "b"]],
    "masked": [5, "features.0", [3], ["nope"]],
    "pruner": [3, "x", [1]],
    "pruner.start_step": [-1, "3", 1.5, None],
    "pruner.end_step": [-1, 0, "8"],
    "pruner.every": [0, "3", 2.5],
    "pruner.exclude": ["x", [1], None],
    "pruner.min_sparsity": [2, -0.5, "0.8"],
    "pruner.state": [5, None],
    "pruner.state.step_count": [-1, "x", 1.5, True],
    "pruner.state.sparsity": [2.0, NAN, "x"],
    "args": [5, "x"],
    "args.model": [5, "vgg", None],
    "args.num_classes": [0, 1, 2.5, True, "3"],
    "args.in_channels": [0, -1, "1", None],
    "args.input_size": [[8], [8, 0], "8x8", [8.0, 8], None],
    "args.image_size": [0, -8, "8", 8.5],
    "args.channels": [2, "1", True],
    "args.mode": ["fast", 1, None],
    "args.sparsity": [1.0, -0.1, "0.9", NAN, True],
    "args.prune_all": [1, "yes", None],
    "args.exclude": ["features.0", 5, [1]],
    "args.optimizer": ["lion", None, 1],
    "args.lr": ["fast", 0, -1e-3, INF, NAN, None, True],
    "args.weight_decay": [-0.1, "0", NAN, None],
    "args.batch_size": [0, 1, -5, 16.0, "16", True, None],
    "args.epochs": [0, -1, 2.5, "2"],
    "args.seed": [-1, 0.5, "0", None],
    "args.val_fraction": [1.0, -0.2, "0.2", NAN],
    "args.init": [5, ["a"]],
    "model": [5, "weights", {"features.0.weight": 1.0}],
    "optimizer": [5, {"state": {}}, {"state": 5, "param_groups": []}],
}
MISSING = [
    "model",
    "optimizer",
    "epoch",
    "args",
    "args.lr",
    "args.batch_size",
    "args.model",
    "pruner.every",
    "pruner.state",
    "pruner.state.step_count",
]


def _set(ckpt, field, value):
    *parents, last = field.split(".")
    d = ckpt
    for p in parents:
        d = d[p]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()


def _resume_error(tmp_path, capsys, npz, ckpt, *words):
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    code = cli("--data", npz, "--resume", bad, "--epochs", 3, "--out", tmp_path / "o")
    line = assert_one_line_error(capsys, code, str(bad), *words)
    assert not (tmp_path / "o").exists()  # refused before anything was trained or written
    return line


@pytest.mark.parametrize(
    "field, value", [(f, v) for f, vs in BAD_FIELDS.items() for v in vs], ids=lambda v: repr(v)[:20]
)
def test_every_checkpoint_field_is_checked(npz, tmp_path, capsys, scratch_ckpt, field, value):
    ckpt = copy.deepcopy(scratch_ckpt)
    _set(ckpt, field, value)
    _resume_error(tmp_path, capsys, npz, ckpt, field)


@pytest.mark.parametrize("field", MISSING)
def test_missing_checkpoint_fields(npz, tmp_path, capsys, scratch_ckpt, field):
    ckpt = copy.deepcopy(scratch_ckpt)
    _set(ckpt, field, _DELETE)
    _resume_error(tmp_path, capsys, npz, ckpt, f"no {field}")


def _first_state(ckpt, dim):
    """(index, state) of the first optimizer entry whose exp_avg has ``dim`` dimensions."""
    return next((i, s) for i, s in ckpt["optimizer"]["state"].items() if s["exp_avg"].dim() == dim)


def _poison(key, value):
    def change(ckpt):
        ckpt["model"][key] = ckpt["model"][key].clone()
        ckpt["model"][key].view(-1)[-1] = value

    return change


DAMAGE = {  # a change -> words of the one-line error
    "NaN in a sparse layer": (
        _poison("features.3.values", NAN),
        ["non-finite weights in layer features.3"],
    ),
    "Inf in the first conv": (
        _poison("features.0.weight", INF),
        ["non-finite weights in layer features.0"],
    ),
    "NaN in the classifier bias": (
        _poison("classifier.3.bias", NAN),
        ["non-finite weights in layer classifier.3"],
    ),
    "NaN in batch-norm statistics": (
        _poison("features.1.running_var", NAN),
        ["non-finite values in layer features.1"],
    ),
    "exp_avg of a dense weight reshaped": (
        lambda c: _first_state(c, 4)[1].update(exp_avg=torch.zeros(5)),
        ["optimizer.state[0].exp_avg", "shape (5,)", "features.0.weight"],
    ),
    "exp_avg_sq of sparse values too short": (
        lambda c: _first_state(c, 1)[1].update(exp_avg_sq=torch.zeros(3)),
        ["exp_avg_sq has shape (3,)"],
    ),
    "NaN in Adam's moments": (
        lambda c: _first_state(c, 4)[1].update(exp_avg=torch.full((32, 1, 3, 3), NAN)),
        ["non-finite optimizer state", "exp_avg"],
    ),
    "negative step": (
        lambda c: _first_state(c, 4)[1].update(step=torch.tensor(-1.0)),
        ["optimizer.state[0].step"],
    ),
    "a state entry that is no dict": (
        lambda c: c["optimizer"]["state"].update({0: 5}),
        ["optimizer.state[0]"],
    ),
    "a state entry holding text": (
        lambda c: _first_state(c, 4)[1].update(exp_avg="x"),
        ["optimizer.state[0].exp_avg"],
    ),
    "state of an unknown parameter": (
        lambda c: c["optimizer"]["state"].update({99: {}}),
        ["optimizer.state", "99"],
    ),
    "a parameter missing from its group": (
        lambda c: c["optimizer"]["param_groups"][0]["params"].pop(),
        ["optimizer state"],
    ),
    "no parameter groups": (lambda c: c["optimizer"].update(param_groups=[]), ["optimizer state"]),
    "group lr as text": (
        lambda c: c["optimizer"]["param_groups"][0].update(lr="fast"),
        ["optimizer.param_groups[0].lr"],
    ),
    "group lr removed": (
        lambda c: c["optimizer"]["param_groups"][0].pop("lr"),
        ["optimizer.param_groups[0].lr"],
    ),
    "betas too short": (
        lambda c: c["optimizer"]["param_groups"][0].update(betas=(0.9,)),
        ["optimizer.param_groups[0].betas"],
    ),
    "beta of 1.5": (
        lambda c: c["optimizer"]["param_groups"][0].update(betas=(1.5, 0.9)),
        ["optimizer.param_groups[0].betas"],
    ),
    "negative eps": (
        lambda c: c["optimizer"]["param_groups"][0].update(eps=-1.0),
        ["optimizer.param_groups[0].eps"],
    ),
    "weight decay NaN": (
        lambda c: c["optimizer"]["param_groups"][0].update(weight_decay=NAN),
        ["optimizer.param_groups[0].weight_decay"],
    ),
    "amsgrad as text": (
        lambda c: c["optimizer"]["param_groups"][0].update(amsgrad="no"),
        ["optimizer.param_groups[0].amsgrad"],
    ),
    "a model entry removed": (
        lambda c: c["model"].pop("features.4.weight"),
        ["model state does not fit", "features.4.weight"],
    ),
    "an unknown model entry": (
        lambda c: c["model"].update(extra=torch.zeros(1)),
        ["model state does not fit", "extra"],
    ),
    "a dense weight of the wrong shape": (
        lambda c: c["model"].update({"features.0.weight": torch.zeros(32, 1, 5, 5)}),
        ["model state does not fit", "features.0.weight"],
    ),
    "a broken sparsity pattern": (
        lambda c: c["model"].update(
            {"features.3.col_idx": c["model"]["features.3.col_idx"].flip(0)}
        ),
        ["model state does not fit"],
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_model_and_optimizer_state(npz, tmp_path, capsys, scratch_ckpt, case):
    change, words = DAMAGE[case]
    ckpt = copy.deepcopy(scratch_ckpt)
    change(ckpt)
    line = _resume_error(tmp_path, capsys, npz, ckpt, *words)
    assert "diverged" not in line


def test_the_checkpoint_itself_resumes(npz, tmp_path, capsys, scratch_ckpt):
    torch.save(scratch_ckpt, tmp_path / "good.pt")
    assert (
        cli("--data", npz, "--resume", tmp_path / "good.pt", "--epochs", 2, "--out", tmp_path / "o")
        == 0
    )


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda sd: sd["features.3.weight"].view(-1).__setitem__(0, NAN),
            ["non-finite weights in layer features.3"],
        ),
        (
            lambda sd: sd["classifier.1.bias"].fill_(INF),
            ["non-finite weights in layer classifier.1"],
        ),
    ],
)
def test_init_with_non_finite_weights(npz, tmp_path, capsys, change, words):
    sd = small_cnn(3, 1).state_dict()
    change(sd)
    torch.save(sd, tmp_path / "w.pt")
    assert_one_line_error(
        capsys,
        cli("--data", npz, "--init", tmp_path / "w.pt", "--out", tmp_path / "o"),
        str(tmp_path / "w.pt"),
        *words,
    )


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("args", 5, ["args is 5"]),
        ("args.model", 5, ["args.model is 5"]),
        ("model", "x", ["model is not a state_dict"]),
    ],
)
def test_init_from_a_damaged_checkpoint(npz, tmp_path, capsys, scratch_ckpt, field, value, words):
    ckpt = copy.deepcopy(scratch_ckpt)
    _set(ckpt, field, value)
    torch.save(ckpt, tmp_path / "c.pt")
    assert_one_line_error(
        capsys,
        cli("--data", npz, "--init", tmp_path / "c.pt", "--out", tmp_path / "o"),
        str(tmp_path / "c.pt"),
        *words,
    )


# -- 5. pixels deeper than 8 bits, other integer types ------------------------------------------


@pytest.mark.parametrize(
    "dtype, scale",
    [(np.uint8, 1), (np.uint16, 257), (np.int16, 1), (np.int32, 1), (np.int64, 1), (np.uint32, 1)],
)
def test_integer_pixels_are_scaled_to_0_1(tmp_path, dtype, scale):
    np.savez(tmp_path / "x.npz", x=x30.astype(dtype) * dtype(scale), y=y30)
    d = data_mod.load_dataset(tmp_path / "x.npz", say=quiet)
    got = d.batch(torch.arange(len(d)))
    assert got.dtype == torch.float32 and float(got.max()) <= 1.0
    torch.testing.assert_close(got, torch.from_numpy(x30[:, None] / 255.0).float())


@pytest.mark.parametrize(
    "x, words",
    [
        (x30.astype(np.int32) * 300, ["int32", "0 to 76500"]),
        (x30.astype(np.int16) - 10, ["int16", "-10"]),
        ((x30.astype(np.int16) - 128).astype(np.int8), ["int8"]),
        (np.where(np.arange(30)[:, None, None] == 4, np.inf, x30 / 255.0), ["image 4"]),
        (np.where(np.arange(30)[:, None, None] == 5, -np.inf, x30 / 255.0), ["image 5"]),
        (np.where(np.arange(30)[:, None, None] == 6, 1e300, x30 / 255.0), ["image 6"]),
    ],
)
def test_pixels_without_a_known_scale_are_one_line(tmp_path, capsys, x, words):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=y30)
    assert_one_line_error(capsys, cli("--data", path, "--out", tmp_path / "o"), str(path), *words)


def test_float_pixels_are_taken_as_they_are(tmp_path):
    x = x30.astype(np.float64) / 10.0  # 0..25.5: the user's own scale
    np.savez(tmp_path / "f.npz", x=x, y=y30)
    d = data_mod.load_dataset(tmp_path / "f.npz", say=quiet)
    torch.testing.assert_close(d.batch(torch.arange(30)), torch.from_numpy(x[:, None]).float())


def _image_folder(root, arrays_of_class):
    """class name -> list of (mode, array) written as .png (or .tiff for modes PNG lacks)."""
    from PIL import Image

    for name, images in arrays_of_class.items():
        (root / name).mkdir(parents=True)
        for i, (mode, a) in enumerate(images):
            im = Image.fromarray(a)
            assert im.mode == mode
            im.save(root / name / (f"{i}.png" if mode in ("L", "I;16") else f"{i}.tiff"))
    return root


def _gray(seed, h=8, w=8):
    return np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_images_are_scaled_like_8_bit_ones(tmp_path, mode):
    eight = {c: [("L", _gray(10 * k + i)) for i in range(3)] for k, c in enumerate(("a", "b"))}
    deep = {}
    for c, images in eight.items():
        deep[c] = [
            (
                mode,
                a.astype(np.uint16) * 257
                if mode == "I;16"
                else a.astype(np.int32) * 257
                if mode == "I"
                else a.astype(np.float32) / 255,
            )
            for _, a in images
        ]
    ref = data_mod.load_dataset(_image_folder(tmp_path / "eight", eight), say=quiet)
    got = data_mod.load_dataset(_image_folder(tmp_path / "deep", deep), say=quiet)
    idx = torch.arange(len(ref))
    torch.testing.assert_close(got.batch(idx), ref.batch(idx))
    # resized and as 3 channels too
    got = data_mod.load_dataset(tmp_path / "deep", image_size=5, channels=3, say=quiet)
    ref = data_mod.load_dataset(tmp_path / "eight", image_size=5, channels=3, say=quiet)
    assert got.x.shape == ref.x.shape == (6, 3, 5, 5)
    torch.testing.assert_close(got.batch(idx), ref.batch(idx), atol=2 / 255, rtol=0)


def test_mixed_8_and_16_bit_images(tmp_path):
    a = _gray(1)
    root = _image_folder(
        tmp_path / "mixed", {"a": [("L", a)], "b": [("I;16", a.astype(np.uint16) * 257)]}
    )
    d = data_mod.load_dataset(root, say=quiet)
    x = d.batch(torch.arange(2))
    torch.testing.assert_close(x[0], x[1])
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize(
    "mode, a, words",
    [
        ("F", np.where(np.eye(8) > 0, np.nan, 0.5).astype(np.float32), ["NaN or infinite"]),
        ("F", np.full((8, 8), np.inf, np.float32), ["NaN or infinite"]),
        ("I", np.full((8, 8), 70000, np.int32), ["32-bit integer pixels", "70000"]),
        ("I", np.full((8, 8), -5, np.int32), ["32-bit integer pixels", "-5"]),
    ],
)
def test_bad_deep_images_name_the_file(tmp_path, capsys, mode, a, words):
    root = _image_folder(tmp_path / "d", {"a": [("L", _gray(0))], "b": [(mode, a)]})
    assert_one_line_error(
        capsys, cli("--data", root, "--out", tmp_path / "o"), str(root / "b" / "0.tiff"), *words
    )


def test_16_bit_images_train(tmp_path, capsys):
    images = {
        c: [("I;16", _gray(10 * k + i).astype(np.uint16) * 257) for i in range(4)]
        for k, c in enumerate(CLASSES)
    }
    root = _image_folder(tmp_path / "d", images)
    assert (
        cli(
            "--data",
            root,
            "--epochs",
            1,
            "--batch-size",
            4,
            "--sparsity",
            0,
            "--out",
            tmp_path / "o",
        )
        == 0
    )
    assert "12 images 1x8x8" in capsys.readouterr().out


# -- 6. a layer's own error when a checkpoint is loaded -----------------------------------------


def _layer_error(monkeypatch, message):
    def fail(model, sd, strict=True):
        raise ValueError(message)

    monkeypatch.setattr(surgery, "sparsify_like", fail)


LAYER_MESSAGE = (
    "SparseConv2d(32->32, 3x3) (features.3.): malformed sparsity pattern:\n"
    "  column indices of row 0 are not strictly increasing at position 1 " + "x" * 300
)


def test_a_layer_error_on_resume_keeps_its_message_and_names_the_file(
    npz, tmp_path, capsys, scratch_ckpt, monkeypatch
):
    torch.save(scratch_ckpt, tmp_path / "c.pt")
    _layer_error(monkeypatch, LAYER_MESSAGE)
    line = assert_one_line_error(
        capsys,
        cli("--data", npz, "--resume", tmp_path / "c.pt", "--epochs", 2, "--out", tmp_path / "o"),
        str(tmp_path / "c.pt"),
        "model state does not fit",
    )
    assert " ".join(LAYER_MESSAGE.split()) in " ".join(line.split())


def test_a_layer_error_on_init_keeps_its_message_and_names_the_file(
    npz, tmp_path, capsys, monkeypatch
):
    torch.save(small_cnn(3, 1).state_dict(), tmp_path / "w.pt")
    _layer_error(monkeypatch, LAYER_MESSAGE)
    line = assert_one_line_error(
        capsys,
        cli("--data", npz, "--init", tmp_path / "w.pt", "--out", tmp_path / "o"),
        str(tmp_path / "w.pt"),
        "does not fit",
    )
    assert " ".join(LAYER_MESSAGE.split()) in " ".join(line.split())


def test_a_real_pattern_error_passes_through_whole(npz, tmp_path, capsys, scratch_ckpt):
    ckpt = copy.deepcopy(scratch_ckpt)
    ckpt["model"]["features.3.col_idx"] = ckpt["model"]["features.3.col_idx"].flip(0)
    with pytest.raises(ValueError) as e:  # what the layer itself says
        surgery.sparsify_like(small_cnn(3, 1), ckpt["model"])
    line = _resume_error(tmp_path, capsys, npz, ckpt, "model state does not fit")
    assert " ".join(str(e.value).split()) in line
