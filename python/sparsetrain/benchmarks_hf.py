"""End-to-end transformer benchmarks (``sparsetrain bench --models bert,llama``): a training
step of BERT-base and of a Llama-style decoder built from configs (nothing is downloaded),
dense and sparsetrain, each in float32 and under bf16 autocast, taking turns in one loop;
and the peak resident memory of each configuration's training step, each in a fresh process.

BERT-base: 12 layers, hidden 768, 16 x 128 tokens, sequence classification, AdamW; the
encoder's linear layers magnitude-pruned per layer (embeddings, pooler and classifier dense).
Llama-style: hidden 1024, 8 layers, intermediate 2816, 8 x 256 tokens, causal LM loss, AdamW;
the decoder's linear layers pruned (embeddings and LM head dense).
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

MODELS = ("bert", "llama")
# The decoder / encoder linears each model prunes (glob patterns of module names).
_PRUNED = {"bert": ["bert.encoder.*"], "llama": ["model.layers.*"]}


def build(name: str, seed: int = 0, tiny: bool = False) -> torch.nn.Module:
    """The dense model ``name`` with fresh weights (needs the hf extra: transformers);
    ``tiny``: the same architecture at a few layers and features (a smoke run)."""
    try:
        import transformers
    except ImportError:
        raise RuntimeError(
            "the transformer benchmarks need transformers: pip install 'sparsetrain[hf]'"
        ) from None
    torch.manual_seed(seed)
    if name == "bert":
        cfg = transformers.BertConfig(
            hidden_size=64 if tiny else 768,
            num_hidden_layers=2 if tiny else 12,
            num_attention_heads=4 if tiny else 12,
            intermediate_size=256 if tiny else 3072,
            num_labels=2,
        )
        return transformers.BertForSequenceClassification(cfg)
    if name == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=32000,
            hidden_size=64 if tiny else 1024,
            num_hidden_layers=2 if tiny else 8,
            num_attention_heads=4 if tiny else 16,
            num_key_value_heads=4 if tiny else 16,
            intermediate_size=176 if tiny else 2816,
            max_position_embeddings=512,
            tie_word_embeddings=False,
        )
        return transformers.LlamaForCausalLM(cfg)
    raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")


def batch(name: str, seed: int = 0, tiny: bool = False) -> dict:
    """One training batch of keyword arguments (labels included)."""
    g = torch.Generator().manual_seed(seed)
    if name == "bert":
        shape = (2, 16) if tiny else (16, 128)
        ids = torch.randint(0, 30522, shape, generator=g)
        return {"input_ids": ids, "labels": torch.randint(0, 2, shape[:1], generator=g)}
    ids = torch.randint(0, 32000, (2, 16) if tiny else (8, 256), generator=g)
    return {"input_ids": ids, "labels": ids}


def prepared(name: str, sparse: bool, sparsity: float, tiny: bool = False) -> tuple:
    """(model, optimizer, batch, layers made sparse) for one configuration."""
    from . import magnitude_prune, sparsify

    model = build(name, tiny=tiny)
    b = batch(name, tiny=tiny)
    swapped = 0
    if sparse:
        magnitude_prune(model, sparsity, scope="layer", include=_PRUNED[name])
        # (tiny: every pruned layer swapped, though dense would be faster at that size)
        report = sparsify(
            model,
            example_inputs={"input_ids": b["input_ids"]},
            min_sparsity=0.5,
            only_if_faster=not tiny,
        )
        swapped = len(report.swapped)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    return model, opt, b, swapped


def step(model, opt, b: dict, precision: str) -> float:
    """One AdamW training step, under bf16 autocast for precision "bf16"; returns the loss."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**b).loss
    loss.backward()
    opt.step()
    return loss.item()


def step_times(
    name: str, sparsity: float, precisions, repeats: int, warmup: int = 1, tiny: bool = False
) -> dict:
    """Median seconds of a step of each configuration ("dense fp32", "sparse bf16", ...),
    the two models' steps taking turns, and the number of layers sparsify swapped."""
    from .benchmarks import alternating_medians

    dense = prepared(name, False, sparsity, tiny)
    sparse = prepared(name, True, sparsity, tiny)
    steps = {}
    for kind, (m, o, b, _) in (("dense", dense), ("sparse", sparse)):
        for p in precisions:
            steps[f"{kind} {p}"] = lambda m=m, o=o, b=b, p=p: step(m, o, b, p)
    times = alternating_medians(steps, repeats, warmup)
    return {"times": times, "swapped": sparse[3]}


def step_peak_mb(name: str, sparse: bool, precision: str, sparsity: float, tiny: bool) -> float:
    """In this process: build one configuration, train two steps, give freed memory back to
    the system, then the peak resident memory (MB) during one more step (VmHWM reset just
    before through /proc/self/clear_refs): parameters, optimizer state and the step's
    activations, not the one-off setup (pruning, sparsify's timing)."""
    import ctypes

    from .benchmarks import _status_mb

    m, o, b, _ = prepared(name, sparse, sparsity, tiny)
    for _ in range(2):
        step(m, o, b, precision)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS
    step(m, o, b, precision)
    return _status_mb("VmHWM")


def peak_memory_mb(
    name: str, sparse: bool, precision: str, sparsity: float, tiny: bool = False
) -> float:
    """step_peak_mb in a fresh process (nothing else of this one counts)."""
    code = (
        "import json, sparsetrain.benchmarks_hf as H, torch;"
        f"torch.set_num_threads({torch.get_num_threads()});"
        f"print(json.dumps(H.step_peak_mb({name!r}, {sparse!r}, {precision!r}, {sparsity!r}, "
        f"{tiny!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1]))
