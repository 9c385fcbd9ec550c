"""Sparse from scratch: train a CNN while GradualMagnitudePruner takes it from dense to 90%
(cubic schedule; layers become sparse modules once 80% of their weights are gone), next to
plain dense training with the same seed.

    python examples/gradual_pruning.py [--sparsity 0.9] [--epochs 16]

Data: scikit-learn's bundled 8x8 digits (no download).
"""

import argparse
import time

import torch

import sparsetrain as st
from digits_common import accuracy, load_digits, make_cnn, train


def run(sparsity=0.9, epochs=16, batch_size=64, seed=0, verbose=True):
    say = print if verbose else (lambda *a, **k: None)
    train_data, test_data = load_digits(seed=seed)
    steps_per_epoch = -(-len(train_data[1]) // batch_size)
    results = {}
    for name in ("dense", "gradual"):
        model = make_cnn(seed)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        pruner = None
        if name == "gradual":
            # Dense for the first epoch, pruned up to 2/3 of the way, then fine-tuned sparse.
            # The first convolution (32 x 9 weights) stays dense.
            pruner = st.GradualMagnitudePruner(
                model,
                opt,
                sparsity,
                start_step=steps_per_epoch,
                end_step=steps_per_epoch * max(1, (2 * epochs) // 3),
                every=max(1, steps_per_epoch // 2),
                exclude="0",
            )
        t = time.perf_counter()
        train(
            model,
            opt,
            train_data,
            epochs,
            batch_size,
            seed=seed,
            after_step=pruner.step if pruner else None,
        )
        seconds = time.perf_counter() - t
        results[name] = accuracy(model, test_data)
        say(f"{name:<8}: {results[name]:.1f}% test accuracy, {seconds:.1f} s")
        if pruner:
            for layer_name, layer in model.named_modules():
                if isinstance(layer, (st.SparseConv2d, st.SparseLinear)):
                    say(f"  {layer_name}: {type(layer).__name__}, sparsity {layer.sparsity:.3f}")
            results["model"] = model
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    run(a.sparsity, a.epochs, seed=a.seed)


if __name__ == "__main__":
    main()
