"""Shared benchmark setup: 2 threads, and a closing table of ratios measured in this run."""

import torch

THREADS = 2


def pytest_configure(config):
    torch.set_num_threads(THREADS)


def _median(bench):
    stats = bench.stats
    return getattr(stats, "stats", stats).median


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    by_group = {}
    peak = None
    threads = {}
    memory = None
    pairs = []
    precision_rows = []
    for b in session.benchmarks:
        info = b.extra_info
        if info.get("kind") == "memory":
            memory = info
        elif info.get("kind") == "pairs":
            pairs.append(info)
        elif info.get("kind") == "precision_rows":
            precision_rows.append(info)
        elif info.get("kind") == "threads":
            threads[info["when"]] = _median(b)
        elif info.get("kind") == "peak":
            peak = info["flops"] / _median(b) / 1e9
        elif info.get("kind") == "dense":
            for case in info["cases"]:
                by_group.setdefault(case, {})["dense"] = (b, info)
        elif info.get("kind") == "sparse":
            by_group.setdefault(info["case"], {})["sparse"] = (b, info)
    tr = terminalreporter
    if len(threads) == 3:
        tr.section("sparse step alone / after a cache flush / after a dense op (medians)")
        a, f, d = threads["alone"], threads["after cache flush"], threads["after dense"]
        tr.write_line(
            f"alone {a * 1e3:.2f} ms, after 1-thread cache flush {f * 1e3:.2f} ms, "
            f"after dense matmul {d * 1e3:.2f} ms; dense/flush ratio {d / f:.2f}"
        )
    if pairs:
        tr.section("end to end, dense and sparse steps taking turns (medians)")
        for p in pairs:
            tr.write_line(
                f"malloc {p['malloc']:<18}: dense {p['dense_ms']:.0f} ms, sparse "
                f"{p['sparse_ms']:.0f} ms: {p['dense_ms'] / p['sparse_ms']:.2f}x; "
                f"per-pair ratios {p['ratios']} (after {p['warmup_rounds']} warm-up "
                "rounds)"
            )
    if precision_rows:
        tr.section("fp32 and bf16 autocast, dense and sparse taking turns (medians)")
        for info in precision_rows:
            for r in info["rows"]:
                ms = ", ".join(
                    f"{k[:-3].replace('_', ' ')} {v:.1f}"
                    for k, v in r.items()
                    if k.endswith("_ms") and k.count("_") == 2
                )
                tr.write_line(
                    f"{info['name']:<28} @{r['sparsity']:.2f}: {ms} ms; best sparse "
                    f"({r['best_sparse']}) vs best dense ({r['best_dense']}) {r['speedup']:.2f}x"
                )
    if memory:
        tr.section("peak resident memory of one training step (fresh process each)")
        for k in ("dense", "sparse", "dense_kept", "sparse_kept"):
            if k + "_peak_mb" in memory:
                tr.write_line(
                    f"{k:<12} RSS before {memory[k + '_rss_before_mb']:8.0f} MB, peak "
                    f"{memory[k + '_peak_mb']:8.0f} MB, step adds "
                    f"{memory[k + '_step_mb']:8.0f} MB"
                )
    if not by_group:
        return
    tr.section(f"sparse vs dense, fwd+bwd, {THREADS} threads (medians)")
    if peak:
        tr.write_line(f"dense matmul reference: {peak:.1f} GFLOP/s")
    tr.write_line(
        f"{'case':<40}{'dense ms':>10}{'sparse ms':>11}{'speedup':>9}{'nnz GF/s':>10}{'of peak':>9}"
    )
    for case, kinds in sorted(by_group.items()):
        if "dense" not in kinds or "sparse" not in kinds:
            continue
        (bd, _), (bs, info) = kinds["dense"], kinds["sparse"]
        td, ts = _median(bd), _median(bs)
        gfs = info["nnz_flops"] / ts / 1e9
        frac = f"{gfs / peak:.0%}" if peak and gfs else "-"
        tr.write_line(
            f"{case:<40}{td * 1e3:>10.2f}{ts * 1e3:>11.2f}{td / ts:>8.2f}x{gfs:>10.1f}{frac:>9}"
        )
