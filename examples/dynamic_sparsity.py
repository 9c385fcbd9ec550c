"""Sparse from the first step: train a CNN at 90% sparsity with RigL or SET (connections move
every few steps, the layers are never dense), next to dense training with the same seed.

    python examples/dynamic_sparsity.py [--sparsity 0.9] [--epochs 20] [--methods rigl,set]

Data: scikit-learn's bundled 8x8 digits (no download).
"""

import argparse
import time

import torch

import sparsetrain as st
from digits_common import accuracy, load_digits, make_cnn, train


def run(
    sparsity=0.9, epochs=20, methods=("rigl", "set"), batch_size=64, lr=4e-3, seed=0, verbose=True
):
    say = print if verbose else (lambda *a, **k: None)
    train_data, test_data = load_digits(seed=seed)
    steps = epochs * -(-len(train_data[1]) // batch_size)
    results = {}
    for name in ("dense", *methods):
        model = make_cnn(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        dst = None
        if name != "dense":
            # Connections move every 50 steps until 3/4 of the way; ERK gives the small
            # first convolution and the classifier more of the budget (both end up dense).
            dst = st.DynamicSparsity(
                model,
                opt,
                sparsity,
                method=name,
                update_every=50,
                drop_fraction=0.3,
                end_step=(3 * steps) // 4,
                seed=seed,
            )
        t = time.perf_counter()
        train(model, opt, train_data, epochs, batch_size, seed=seed, after_step=dst and dst.step)
        seconds = time.perf_counter() - t
        results[name] = accuracy(model, test_data)
        say(f"{name:<6}: {results[name]:.1f}% test accuracy, {seconds:.1f} s")
        if dst is not None:
            for layer_name, layer in dst.layers.items():
                say(f"  {layer_name}: {type(layer).__name__}, density {1 - layer.sparsity:.3f}")
            for layer_name, why in dst.left_dense.items():
                say(f"  {layer_name}: dense ({why})")
            results[f"{name}_model"] = model
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--methods", default="rigl,set")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    run(a.sparsity, a.epochs, tuple(a.methods.split(",")), seed=a.seed)


if __name__ == "__main__":
    main()
