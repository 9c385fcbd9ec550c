"""Sparse transfer: prune a trained dense CNN to 90%, swap in sparse layers, fine-tune with
the masks fixed; the same fine-tuning of the dense layers under the same masks runs beside it.

    python examples/sparse_transfer.py [--sparsity 0.9] [--pretrain-epochs 8] [--epochs 8] [--bf16]

--bf16 fine-tunes under torch.autocast("cpu", dtype=torch.bfloat16).

Data: scikit-learn's bundled 8x8 digits (no download).
"""

import argparse
import copy
import time

import torch

import sparsetrain as st
from digits_common import accuracy, load_digits, make_cnn, train


def run(
    sparsity=0.9,
    pretrain_epochs=8,
    epochs=8,
    only_if_faster=True,
    seed=0,
    verbose=True,
    bf16=False,
):
    say = print if verbose else (lambda *a, **k: None)
    train_data, test_data = load_digits(seed=seed)

    # 1. A trained dense model (stands in for a pretrained checkpoint).
    model = make_cnn(seed)
    train(
        model, torch.optim.Adam(model.parameters(), lr=2e-3), train_data, pretrain_epochs, seed=seed
    )
    say(f"dense model: {accuracy(model, test_data):.1f}% test accuracy")

    # 2. Prune: the first convolution (32 x 9 weights) stays dense.
    st.magnitude_prune(model, sparsity, scope="layer", exclude="0")
    say(f"pruned to {sparsity:.0%}: {accuracy(model, test_data):.1f}% before fine-tuning")
    masked_dense = copy.deepcopy(model)

    # 3. Swap the pruned layers for sparse ones (timed on the real input shapes).
    report = st.sparsify(
        model, example_inputs=train_data[0][:64], min_sparsity=0.5, only_if_faster=only_if_faster
    )
    say(report)

    # 4. Fine-tune both with the same data order. Pruned layers that stayed dense (measured
    #    faster that way) keep their zeros through st.hold_masks, as does the dense twin.
    results = {}
    for name, m in (("sparse", model), ("dense, same masks", masked_dense)):
        after_step = st.hold_masks(m)
        opt = torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9)
        t = time.perf_counter()
        train(m, opt, train_data, epochs, seed=seed + 1, after_step=after_step, bf16=bf16)
        seconds = time.perf_counter() - t
        results[name] = accuracy(m, test_data)
        say(f"fine-tuned {name:<18}: {results[name]:.1f}% test accuracy, {seconds:.1f} s")
    return {
        "model": model,
        "report": report,
        "sparse": results["sparse"],
        "dense_masked": results["dense, same masks"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--pretrain-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="fine-tune under bf16 autocast")
    a = p.parse_args()
    run(a.sparsity, a.pretrain_epochs, a.epochs, seed=a.seed, bf16=a.bf16)


if __name__ == "__main__":
    main()
