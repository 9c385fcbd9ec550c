"""``sparsetrain bench``: the layer-wise grid (linear, transformer and conv shapes, sparsities
0.8-0.98), sparse vs dense forward + backward, printed as a table, saved as JSON and as a PNG
plot. Linear layers are measured in every precision asked for (float32, bf16 autocast), the
dense and sparse layers in all of them taking turns; the ratio that counts is the fastest
sparse configuration against the fastest dense one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from . import CLIError, positive_int


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="layer-wise speed of sparse vs dense layers (table, JSON, plot)",
        description=__doc__,
    )
    p.add_argument(
        "--layers",
        choices=("all", "linear", "transformer", "conv"),
        default="all",
        help="linear: the classic grid; transformer: 2048-4096 tokens (default: all)",
    )
    p.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="linear layers: fp32 and/or bf16 (autocast) (default: %(default)s)",
    )
    p.add_argument(
        "--sparsities",
        default="0.8,0.9,0.95,0.98",
        help="comma-separated sparsities (default: %(default)s)",
    )
    p.add_argument(
        "--models",
        default=None,
        help="end to end instead of layers: bert, llama (need the hf extra), resnet18, "
        "resnet34, resnet50, mobilenetv2 (comma-separated): dense and sparse training steps "
        "in every precision (CNNs also in NCHW and channels_last), peak memory of each",
    )
    p.add_argument("--repeats", type=positive_int, default=7, help="timed runs per case (median)")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument(
        "--quick",
        action="store_true",
        help="one linear and two conv shapes, 3 repeats (a smoke run)",
    )
    p.add_argument(
        "--out",
        default="sparsetrain-bench",
        help="folder for results.json and speedup.png (default: %(default)s)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.set_defaults(func=run)
    return p


def _sparsities(text: str) -> list:
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CLIError(f"--sparsities: expected numbers like 0.9,0.95, got {text!r}") from None
    if not values or not all(0.0 <= v < 1.0 for v in values):
        raise CLIError(f"--sparsities: each must be in [0, 1), got {text!r}")
    return sorted(set(values))


def _precisions(text: str) -> list:
    from .. import benchmarks as B

    values = [s.strip() for s in text.split(",") if s.strip()]
    if not values or any(v not in B.PRECISIONS for v in values):
        raise CLIError(f"--precisions: each must be one of {', '.join(B.PRECISIONS)}, got {text!r}")
    return [p for p in B.PRECISIONS if p in values]


def _models(text: str) -> list:
    from ..benchmarks_cnn import CNN_MODELS
    from ..benchmarks_hf import MODELS

    known = tuple(MODELS) + CNN_MODELS
    values = [s.strip() for s in text.split(",") if s.strip()]
    if not values or any(v not in known for v in values):
        raise CLIError(f"--models: each must be one of {', '.join(known)}, got {text!r}")
    return values


def run_cnn(args, name, sparsities, repeats, results) -> None:
    """A CNN's end-to-end rows: per sparsity, its step in the eight configurations
    (benchmarks_cnn), the fastest sparse against the fastest dense of each precision, and the
    peak memory of each (dense measured once)."""
    from .. import benchmarks_cnn as C

    dense_peaks = None
    for sparsity in sparsities:
        r = C.format_step_times(name, sparsity, repeats, tiny=args.quick)
        peaks = C.format_step_memory(name, sparsity, tiny=args.quick, threads=args.threads)
        dense_peaks = dense_peaks or {k: v for k, v in peaks.items() if k.startswith("dense")}
        peaks.update(dense_peaks)
        row = {
            "model": name,
            "sparsity": sparsity,
            "times_ms": {k: v * 1e3 for k, v in r["times"].items()},
            "peak_mb": peaks,
            "ratio": r["ratio"],
            "best": r["best"],
            "speedup": r["ratio"]["fp32"],
        }
        results["models"].append(row)
        for p in C.PRECISIONS:
            cells = " / ".join(
                f"{row['times_ms'][f'{kind} {p} {fmt}']:.0f}"
                for kind in ("dense", "sparse")
                for fmt in C.FORMATS
            )
            mem = " / ".join(
                f"{peaks[f'{kind} {p} {fmt}']:.0f}"
                for kind in ("dense", "sparse")
                for fmt in C.FORMATS
            )
            print(
                f"{name:<12}{sparsity:>9.2f}  {p}: dense NCHW / CL, sparse NCHW / CL {cells} ms; "
                f"best sparse ({r['best'][f'sparse {p}']}) vs best dense "
                f"({r['best'][f'dense {p}']}) {r['ratio'][p]:.2f}x; peak MB {mem}"
            )
        sys.stdout.flush()


def run_models(args, models, sparsities, precisions, repeats, results) -> None:
    """The end-to-end table: per model and sparsity, a step of dense and sparse in each
    precision (medians, taking turns), the ratio of the fastest of each, peak memory."""
    from .. import benchmarks as B
    from .. import benchmarks_hf as H
    from ..benchmarks_cnn import CNN_MODELS

    print(
        f"{'model':<8}{'sparsity':>9}  step ms (dense / sparse, per precision), "
        "best sparse vs best dense, peak MB"
    )
    for name in models:
        if name in CNN_MODELS:
            run_cnn(args, name, sparsities, repeats, results)
            continue
        peaks = {}
        for sparsity in sparsities:
            r = H.step_times(name, sparsity, precisions, repeats, tiny=args.quick)
            for kind in ("dense", "sparse"):
                for p in precisions:
                    key = (kind, p, sparsity if kind == "sparse" else None)
                    if key not in peaks:
                        peaks[key] = H.peak_memory_mb(
                            name, kind == "sparse", p, sparsity, tiny=args.quick
                        )
            row = {"model": name, "sparsity": sparsity, "layers_sparse": r["swapped"]}
            row.update(B.precision_row(r["times"], precisions))
            for kind in ("dense", "sparse"):
                for p in precisions:
                    key = (kind, p, sparsity if kind == "sparse" else None)
                    row[f"{kind}_{p}_peak_mb"] = peaks[key]
            results["models"].append(row)
            ms = ", ".join(
                f"{p} {row[f'dense_{p}_ms']:.0f} / {row[f'sparse_{p}_ms']:.0f}" for p in precisions
            )
            mem = ", ".join(
                f"{p} {row[f'dense_{p}_peak_mb']:.0f} / {row[f'sparse_{p}_peak_mb']:.0f}"
                for p in precisions
            )
            print(
                f"{name:<8}{sparsity:>9.2f}  {ms}; {row['speedup']:.2f}x (best dense "
                f"{row['best_dense']}, best sparse {row['best_sparse']}); peak MB {mem}; "
                f"{row['layers_sparse']} layers sparse"
            )
            sys.stdout.flush()


def cases(layers: str, quick: bool) -> list[tuple]:
    """(family, name, shape) of every layer in the grid."""
    from .. import benchmarks as B

    lin = B.LINEAR_SHAPES[:1] if quick else B.LINEAR_SHAPES
    conv = [B.CONV_LAYERS[2], B.CONV_LAYERS[5]] if quick else B.CONV_LAYERS
    out = []
    if layers in ("all", "linear"):
        out += [("linear", B.linear_name(s), s) for s in lin]
    if layers in ("all", "transformer"):
        tf = B.TRANSFORMER_SHAPES[:1] if quick else B.TRANSFORMER_SHAPES
        out += [("linear", B.linear_name(s), s) for s in tf]
    if layers in ("all", "conv"):
        out += [("conv", B.conv_name(c), c) for c in conv]
    return out


def measure_linear(
    shape: tuple, sparsities: list[float], repeats: int, precisions: list[str]
) -> list[dict]:
    """Per sparsity, dense and sparse in every precision taking turns: ms of each, the speedup
    per precision, the fastest sparse against the fastest dense, nonzero GFLOP/s."""
    from .. import SparseLinear
    from .. import benchmarks as B

    dense = B.pruned_linear(shape, 0.0)
    x = B.linear_input(shape)
    grad = B.output_grad(dense, x)
    grads = {p: grad.to(torch.bfloat16) if p == "bf16" else grad for p in precisions}
    rows = []
    for sparsity in sparsities:
        sparse = SparseLinear.from_dense(B.pruned_linear(shape, sparsity))
        steps = {}
        for kind, module in (("dense", dense), ("sparse", sparse)):
            for p in precisions:
                steps[f"{kind} {p}"] = (
                    lambda m=module, p=p: B.autocast_step(m, x, grads[p], p)  # noqa: B023
                )
        t = B.alternating_medians(steps, repeats)
        first = precisions[0]
        row = {
            "sparsity": sparsity,
            "dense_ms": t[f"dense {first}"] * 1e3,
            "sparse_ms": t[f"sparse {first}"] * 1e3,
            **B.precision_row(t, precisions),
        }
        flops = B.nnz_flops(sparse, x)
        for p in precisions:
            row[f"speedup_{p}"] = t[f"dense {p}"] / t[f"sparse {p}"]
            row[f"nnz_gflops_{p}"] = flops / t[f"sparse {p}"] / 1e9
        row["nnz_gflops"] = row[f"nnz_gflops_{row['best_sparse']}"]
        rows.append(row)
    return rows


FORMATS = ("nchw", "channels_last")  # the dense convolutions' memory formats


def measure_conv(
    layer: tuple, sparsities: list[float], repeats: int, precisions: list[str]
) -> list[dict]:
    """Per sparsity, every configuration taking turns: dense in every precision and memory
    format (``dense_{p}_{format}_ms``), sparse in every precision (NCHW input,
    ``sparse_{p}_ms``); the fastest sparse against the fastest dense (``speedup``, with
    ``best_dense`` / ``best_sparse`` naming them), sparse fp32 against the fastest dense fp32
    (``speedup_fp32``), nonzero GFLOP/s of the fastest sparse, the layout ``auto`` chose."""
    import copy

    from .. import SparseConv2d
    from .. import benchmarks as B

    dense = {"nchw": B.pruned_conv(layer, 0.0)}
    dense["channels_last"] = copy.deepcopy(dense["nchw"]).to(memory_format=torch.channels_last)
    x = {"nchw": B.conv_input(layer)}
    x["channels_last"] = (
        x["nchw"].detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    )
    grad = B.output_grad(dense["nchw"], x["nchw"])
    grads = {}
    for fmt in FORMATS:
        g = grad.contiguous(memory_format=torch.channels_last) if fmt != "nchw" else grad
        grads.update({(p, fmt): g.to(torch.bfloat16) if p == "bf16" else g for p in precisions})
    rows = []
    for sparsity in sparsities:
        sparse = SparseConv2d.from_dense(B.pruned_conv(layer, sparsity))
        steps = {}
        for p in precisions:
            for fmt in FORMATS:
                steps[f"dense {p} {fmt}"] = lambda p=p, f=fmt: B.autocast_step(
                    dense[f], x[f], grads[(p, f)], p
                )
            steps[f"sparse {p}"] = lambda p=p, m=sparse: B.autocast_step(
                m, x["nchw"], grads[(p, "nchw")], p
            )
        t = B.alternating_medians(steps, repeats)
        dense_keys = [k for k in t if k.startswith("dense")]
        best_dense = min(dense_keys, key=t.get)
        best_sparse = min((f"sparse {p}" for p in precisions), key=t.get)
        row = {
            "sparsity": sparsity,
            "dense_ms": t[dense_keys[0]] * 1e3,
            "sparse_ms": t[f"sparse {precisions[0]}"] * 1e3,
            "speedup": t[best_dense] / t[best_sparse],
            "best_dense": best_dense.removeprefix("dense "),
            "best_sparse": best_sparse.removeprefix("sparse "),
            "nnz_gflops": B.nnz_flops(sparse, x["nchw"]) / t[best_sparse] / 1e9,
            "strategy": sparse.strategy_for(x["nchw"].shape),  # the layout "auto" settled on
        }
        if "fp32" in precisions:
            fp32 = min(t[f"dense fp32 {f}"] for f in FORMATS)
            row["speedup_fp32"] = fp32 / t["sparse fp32"]
        for key, seconds in t.items():
            row[key.replace(" ", "_") + "_ms"] = seconds * 1e3
        rows.append(row)
    return rows


def plot(results: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError(
            "the plot needs matplotlib (pip install sparsetrain[cli]), or pass --no-plot"
        ) from None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, family in zip(axes, ("linear", "conv")):
        layers = [r for r in results["layers"] if r["family"] == family]
        for layer in layers:
            xs = [row["sparsity"] * 100 for row in layer["rows"]]
            ys = [row["speedup"] for row in layer["rows"]]
            ax.plot(xs, ys, marker="o", label=layer["name"].split(" ", 1)[1])
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(f"{family} layers, forward + backward")
        ax.set_xlabel("sparsity (%)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if layers:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("speedup over dense PyTorch (x)")
    m = results["machine"]
    fig.suptitle(
        f"sparsetrain {m['version']}, {results['threads']} threads, {m['isa']}, {m['cpu']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from .. import benchmarks as B
    from .. import set_num_threads

    sparsities = _sparsities(args.sparsities)
    precisions = _precisions(args.precisions)
    models = _models(args.models) if args.models is not None else None
    repeats = 3 if args.quick else args.repeats
    if models is not None:
        args.no_plot = True  # the plot shows the layer grid
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401  (fail before the long part, not after)
        except ImportError:
            raise CLIError(
                "the plot needs matplotlib (pip install sparsetrain[cli]), or pass --no-plot"
            ) from None
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create --out folder {args.out!r}: {e.strerror}") from None
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    results = {
        "machine": B.machine(),
        "threads": args.threads,
        "repeats": repeats,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "precisions": precisions,
        "peak_gflops": {p: B.matmul_peak_gflops(p) for p in precisions},
        "layers": [],
        "models": [],
    }
    m = results["machine"]
    print(
        f"{m['cpu']}, {args.threads} threads, kernels {m['isa']}, AMX {m['amx']}, "
        f"AVX512-BF16 {m['avx512_bf16']}; dense 2048^2 matmul "
        + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in results["peak_gflops"].items())
    )
    if models is not None:
        run_models(args, models, sparsities, precisions, repeats, results)
    else:
        print(
            f"{'layer':<34}{'sparsity':>9}{'dense ms':>10}{'sparse ms':>11}{'speedup':>9}"
            f"{'nnz GF/s':>10}   (each precision, convolutions in each memory format too; "
            "speedup = best sparse vs best dense)"
        )
    for family, name, shape in [] if models is not None else cases(args.layers, args.quick):
        if family == "linear":
            rows = measure_linear(shape, sparsities, repeats, precisions)
        else:
            rows = measure_conv(shape, sparsities, repeats, precisions)
        results["layers"].append(
            {"family": family, "name": name, "shape": list(shape), "rows": rows}
        )
        for r in rows:
            if family == "linear":
                dense = " / ".join(f"{r[f'dense_{p}_ms']:.2f}" for p in precisions)
                sparse = " / ".join(f"{r[f'sparse_{p}_ms']:.2f}" for p in precisions)
                gfs = " / ".join(f"{r[f'nnz_gflops_{p}']:.1f}" for p in precisions)
                print(
                    f"{name:<34}{r['sparsity']:>9.2f}  dense {dense} ms, sparse {sparse} ms, "
                    f"{r['speedup']:.2f}x (best dense {r['best_dense']}, best sparse "
                    f"{r['best_sparse']}), nnz GF/s {gfs}"
                )
            else:
                dense = ", ".join(
                    f"{p} " + " / ".join(f"{r[f'dense_{p}_{f}_ms']:.1f}" for f in FORMATS)
                    for p in precisions
                )
                sparse = " / ".join(f"{r[f'sparse_{p}_ms']:.1f}" for p in precisions)
                print(
                    f"{name:<34}{r['sparsity']:>9.2f}  dense {dense} ms (NCHW / channels_last), "
                    f"sparse {sparse} ms, {r['speedup']:.2f}x (best dense {r['best_dense']}, "
                    f"best sparse {r['best_sparse']}), nnz GF/s {r['nnz_gflops']:.1f}"
                )
        sys.stdout.flush()
    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"saved {json_path}")
    if not args.no_plot:
        png = os.path.join(args.out, "speedup.png")
        plot(results, png)
        print(f"saved {png}")
    return 0
