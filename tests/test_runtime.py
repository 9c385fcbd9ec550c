"""Threads, ISA selection, the allocator setting and runtime_info."""

import json
import os
import subprocess
import sys

import pytest
import torch

import sparsetrain as st


def test_runtime_info_keys():
    info = st.runtime_info()
    for key in ("version", "isa", "isas", "threads"):
        assert key in info
    assert info["isa"] in info["isas"]
    assert info["isas"][0] == "scalar"
    assert info["version"] == st.__version__


def test_threads_follow_torch_unless_set():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert st.get_num_threads() == 1
        st.set_num_threads(2)
        assert st.get_num_threads() == 2
        assert st.runtime_info()["threads"] == 2
        st.set_num_threads(None)
        assert st.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        st.set_num_threads(None)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        st.set_num_threads(bad)


def test_set_isa_rejects_unknown():
    with pytest.raises(ValueError, match="unknown ISA"):
        st.set_isa("neon")


def test_unsupported_isa_is_an_error():
    missing = [i for i in ("avx2", "avx512", "avx512_bf16") if i not in st.supported_isas()]
    if not missing:
        pytest.skip("this CPU supports every ISA")
    with pytest.raises(ValueError, match="not supported"):
        st.set_isa(missing[0])


def _import_with_env(value):
    env = dict(os.environ, SPARSETRAIN_ISA=value)
    return subprocess.run(
        [sys.executable, "-c", "import sparsetrain as s; print(s.get_isa())"],
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("name", st.supported_isas())
def test_env_var_forces_isa(name):
    r = _import_with_env(name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name


def test_env_var_with_unknown_isa_fails_clearly():
    r = _import_with_env("sse9")
    assert r.returncode != 0
    assert "SPARSETRAIN_ISA" in r.stderr and "sse9" in r.stderr


def test_kernels_share_torchs_openmp_runtime():
    """One OpenMP runtime in the process: our kernels use torch's worker threads, not a
    second pool competing with torch's spinning workers for the same cores."""
    code = (
        "import sparsetrain, torch; torch.mm(torch.randn(64, 64), torch.randn(64, 64));"
        "maps = open('/proc/self/maps').read().splitlines();"
        "print(sorted({m.split()[-1] for m in maps"
        " if 'libgomp' in m or 'libomp' in m or 'libiomp' in m}))"
    )
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    libs = eval(r.stdout)
    assert len(libs) == 1, f"more than one OpenMP runtime loaded: {libs}"


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return None


def _vm_flags(address):
    """The VmFlags of the mapping of this process holding `address` (Linux smaps)."""
    current = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                current = lo <= address < hi
            elif current and head == "VmFlags:":
                return line.split()[1:]
    return None


def test_workspace_buffers_are_fresh_and_advised_huge_pages():
    from sparsetrain import _workspace

    a = _workspace.empty(8, 1 << 20)  # 32 MB
    b = _workspace.empty(8, 1 << 20)
    assert a.shape == (8, 1 << 20) and a.dtype == torch.float32 and a.is_contiguous()
    assert a.data_ptr() != b.data_ptr()
    small = _workspace.empty(3, 5)
    assert small.shape == (3, 5)
    if sys.platform.startswith("linux") and _thp_mode() is not None:
        # The 2 MiB pages inside the buffer are marked for huge pages ("hg").
        inner = (a.data_ptr() + (4 << 20)) & ~((2 << 20) - 1)
        assert "hg" in (_vm_flags(inner) or [])


def test_advise_hugepages_never_fails_loudly():
    from sparsetrain import _C

    assert _C.advise_hugepages(address=0, nbytes=0) is False
    assert _C.advise_hugepages(address=4096, nbytes=100) is False  # no whole huge page inside
    # Would wrap around:
    assert _C.advise_hugepages(address=2**64 - 4096, nbytes=2**64 - 1) is False
    t = torch.empty(1 << 22)
    expect = sys.platform.startswith("linux") and _thp_mode() is not None
    assert _C.advise_hugepages(address=t.data_ptr(), nbytes=4 * t.numel()) is expect


_REUSE_PROBE = """
import json, resource, sys, torch, sparsetrain as st
def faults_per_use(mb, uses):
    out = []
    for _ in range(uses):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.empty(mb << 18); t.fill_(1.0); del t
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return out
keep = sys.argv[1] == "keep"
applied = st.keep_freed_memory() if keep else False
out = [applied, st.runtime_info()["malloc"], faults_per_use(64, 14)]
out += [st.keep_freed_memory(False), st.runtime_info()["malloc"]]
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
@pytest.mark.parametrize("mode", ["system", "keep"])
def test_keep_freed_memory_reuses_instead_of_faulting(mode):
    """A fresh process (the setting is process-wide): a 64 MB tensor freed and allocated again
    page-faults all of its 16384 pages in again every time by default, and none of them when
    freed memory is kept, once the heap holds it: the first uses fault either way, and while
    small allocations land in a freed block the next big one takes a new block (here up to
    five uses before the heap settles); keep_freed_memory(False) goes back."""
    r = subprocess.run([sys.executable, "-c", _REUSE_PROBE, mode], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    applied, label, faults, restored, label_after = json.loads(r.stdout)
    later = sorted(faults[8:])
    if mode == "keep":
        assert applied and label == "keep freed memory"
        assert later[len(later) // 2] < 1000, faults  # most later uses fault nothing
        assert sum(later) < 2 * 16384, faults
    else:
        assert label == "system default"
        assert later[0] > 8000, faults
    assert restored and label_after == "system default"


@pytest.mark.parametrize("bad", [1, None, "yes"])
def test_keep_freed_memory_rejects_non_bools(bad):
    with pytest.raises(ValueError, match="keep_freed_memory"):
        st.keep_freed_memory(bad)
