"""Threads, ISA selection and runtime_info."""
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
    missing = [i for i in ("avx2", "avx512") if i not in st.supported_isas()]
    if not missing:
        pytest.skip("this CPU supports every ISA")
    with pytest.raises(ValueError, match="not supported"):
        st.set_isa(missing[0])


def _import_with_env(value):
    env = dict(os.environ, SPARSETRAIN_ISA=value)
    return subprocess.run([sys.executable, "-c", "import sparsetrain as s; print(s.get_isa())"],
                          env=env, capture_output=True, text=True)


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
    code = ("import sparsetrain, torch; torch.mm(torch.randn(64, 64), torch.randn(64, 64));"
            "maps = open('/proc/self/maps').read().splitlines();"
            "print(sorted({l.split()[-1] for l in maps if 'libgomp' in l or 'libomp' in l or 'libiomp' in l}))")
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    libs = eval(r.stdout)
    assert len(libs) == 1, f"more than one OpenMP runtime loaded: {libs}"


def test_workspace_reuses_only_free_buffers():
    from sparsetrain import _workspace
    a = _workspace.empty(1 << 17)
    a.fill_(1.0)
    b = _workspace.empty(1 << 17)  # a is alive: must be another buffer
    assert a.data_ptr() != b.data_ptr()
    ptr = a.data_ptr()
    saved = a.view(-1)  # a second reference to the storage keeps it busy
    del a
    c = _workspace.empty(1 << 17)
    assert c.data_ptr() != ptr
    del saved
    d = _workspace.empty(1 << 17)  # now free again: reused
    assert d.data_ptr() == ptr
    del b, c, d
    st.empty_cache()
    assert _workspace.pooled_bytes() == 0
