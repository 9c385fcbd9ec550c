"""The `sparsetrain` command: demo and bench on tiny settings, errors as one line."""

import json
import os
import subprocess
import sys

import pytest

from sparsetrain.cli import main
from sparsetrain.cli.bench import FORMATS

pytestmark = pytest.mark.usefixtures("malloc_calls")  # see conftest


@pytest.mark.parametrize("extra, expected", [([], [True]), (["--system-malloc"], [])])
def test_commands_keep_freed_memory_unless_told_not_to(extra, expected, malloc_calls, capsys):
    assert main(["demo", "--image-size", "8", *extra]) == 2  # stops right after the setting
    assert malloc_calls == expected


def test_demo_runs_and_reports_both_runs(capfd):
    rc = main(
        [
            "demo",
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
        ]
    )
    out = capfd.readouterr()  # file-descriptor level: what PyTorch's C++ prints, too
    assert rc == 0
    assert "images/s" in out.out and "speedup" in out.out and "final loss" in out.out
    assert "sparse conv" in out.out and "batch norm" in out.out  # time per layer type
    assert "2/2" in out.err  # progress bars
    assert "made sparse" in out.out and "batch norms fused with them" in out.out
    assert "profiler_st" not in out.err  # the profiler's own start/stop lines stay out


def test_bench_writes_table_json_and_plot(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--layers",
            "conv",
            "--quick",
            "--sparsities",
            "0.9,0.98",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "speedup" in out and "conv 1x1s2 256->512 @14" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["threads"] == 1 and results["machine"]["isa"]
    rows = [r for layer in results["layers"] for r in layer["rows"]]
    assert len(rows) == 4 and all(r["sparse_ms"] > 0 and r["dense_ms"] > 0 for r in rows)
    # Dense convolutions in every precision and memory format, sparse in every precision, the
    # ratio the fastest of each.
    for r in rows:
        dense = {f"{p} {f}": r[f"dense_{p}_{f}_ms"] for p in ("fp32", "bf16") for f in FORMATS}
        sparse = {p: r[f"sparse_{p}_ms"] for p in ("fp32", "bf16")}
        assert r["best_dense"] == min(dense, key=dense.get)
        assert r["best_sparse"] == min(sparse, key=sparse.get)
        assert r["speedup"] == pytest.approx(min(dense.values()) / min(sparse.values()))
    png = (tmp_path / "speedup.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--sparsities", "0.9,1.5", "--no-plot"], "--sparsities"),
        (["bench", "--sparsities", "abc", "--no-plot"], "--sparsities"),
        (["bench", "--models", "gpt5"], "--models"),
        (["bench", "--precisions", "fp8", "--no-plot"], "--precisions"),
        (["demo", "--model", "vgg"], "--model"),
        (["demo", "--image-size", "8"], "--image-size"),
    ],
)
def test_bad_values_give_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--steps", "0"],
        ["demo", "--sparsity", "1.2"],
        ["bench", "--repeats", "x"],
        ["nonsense"],
    ],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_bench_models_quick(tmp_path, capsys):
    pytest.importorskip("transformers")
    argv = ["bench", "--models", "llama", "--quick", "--sparsities", "0.9", "--threads", "1"]
    rc = main([*argv, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "llama" in out and "AVX512-BF16" in out
    (row,) = json.loads((tmp_path / "results.json").read_text())["models"]
    assert row["layers_sparse"] == 14  # every decoder linear (7 per layer, 2 layers)
    for kind in ("dense", "sparse"):
        for p in ("fp32", "bf16"):
            assert row[f"{kind}_{p}_ms"] > 0 and row[f"{kind}_{p}_peak_mb"] > 100
    assert row["best_dense"] in ("fp32", "bf16") and row["speedup"] > 0


def test_bench_transformer_layers_in_both_precisions(tmp_path, capsys):
    argv = ["bench", "--layers", "transformer", "--quick", "--sparsities", "0.95"]
    rc = main([*argv, "--threads", "1", "--no-plot", "--out", str(tmp_path)])
    assert rc == 0
    (layer,) = json.loads((tmp_path / "results.json").read_text())["layers"]
    (row,) = layer["rows"]
    assert layer["name"] == "linear 512x768->768"
    for p in ("fp32", "bf16"):
        assert row[f"dense_{p}_ms"] > 0 and row[f"sparse_{p}_ms"] > 0 and row[f"nnz_gflops_{p}"] > 0
    assert "best dense" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    out = subprocess.run(
        [sys.executable, "-m", "sparsetrain", "--version"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and out.stdout.startswith("sparsetrain ")
    out = subprocess.run(
        [sys.executable, "-m", "sparsetrain", "bench", "--out", "/proc/nope", "--no-plot"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--out" in out.stderr
