import pytest
import torch

import sparsetrain as st

ISAS = st.supported_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test once per ISA this machine supports (scalar, avx2, avx512, avx512_bf16)."""
    before = st.get_isa()
    st.set_isa(request.param)
    yield request.param
    st.set_isa(before)


@pytest.fixture
def malloc_calls(monkeypatch):
    """The `sparsetrain` command keeps freed memory unless told not to: for tests that run
    it in this process, the calls are recorded instead of changing the test process's
    allocator (tests/test_runtime.py checks the setting itself, in fresh processes)."""
    import sparsetrain._runtime

    calls = []
    monkeypatch.setattr(
        sparsetrain._runtime, "keep_freed_memory", lambda enable=True: calls.append(enable) or True
    )
    return calls


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["csc", "scatter"])
def input_grad_strategy(request):
    """Run the test with each input-gradient kernel forced."""
    from sparsetrain import tuning

    tuning.INPUT_GRAD_STRATEGY = request.param
    yield request.param
    tuning.INPUT_GRAD_STRATEGY = None
