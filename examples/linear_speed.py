"""Train a 95%-sparse linear layer next to the equal dense one and compare step times.

python examples/linear_speed.py [--batch 256] [--in 768] [--out 3072] [--sparsity 0.95]
"""

import argparse
import time

import torch
from torch import nn

import sparsetrain as st


def time_steps(model, x, target, steps):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        losses.append(loss.item())
    times.sort()
    return times[len(times) // 2], losses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--in", dest="in_f", type=int, default=768)
    p.add_argument("--out", dest="out_f", type=int, default=3072)
    p.add_argument("--sparsity", type=float, default=0.95)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()

    torch.manual_seed(0)
    dense = nn.Linear(args.in_f, args.out_f)
    with torch.no_grad():  # magnitude-prune the dense layer to the requested sparsity
        w = dense.weight
        k = int(round(args.sparsity * w.numel()))
        if k:
            cut = w.abs().flatten().kthvalue(k).values
            w.mul_(w.abs() > cut)
    sparse = st.SparseLinear.from_dense(dense)
    x = torch.randn(args.batch, args.in_f)
    target = torch.randn(args.batch, args.out_f)

    print(st.runtime_info())
    print(sparse)
    with torch.no_grad():
        diff = (sparse(x) - dense(x)).abs().max().item()
    print(f"same function before training: max |sparse(x) - dense(x)| = {diff:.2e}")
    td, ld = time_steps(dense, x, target, args.steps)
    ts, ls = time_steps(sparse, x, target, args.steps)
    print(f"dense  nn.Linear   : {td * 1e3:8.2f} ms/step   loss {ld[0]:.4f} -> {ld[-1]:.4f}")
    print(f"sparse SparseLinear: {ts * 1e3:8.2f} ms/step   loss {ls[0]:.4f} -> {ls[-1]:.4f}")
    print(f"speedup: {td / ts:.1f}x  (training step: forward, backward, SGD update)")


if __name__ == "__main__":
    main()
