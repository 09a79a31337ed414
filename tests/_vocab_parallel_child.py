"""One rank of tests/test_vocab_parallel.py: gloo on 127.0.0.1, results to an .npz file.

Usage: python _vocab_parallel_child.py RANK PORT OUT_DIR {full|pairs} [WORLD (3 or 2)]
Every rank builds the same full logits (seeded), keeps its uneven vocabulary slice,
and runs the case list of :func:`cases` (shared with the parent, which compares them
with single-process xent).
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np

V = 507
N = 13
SEED = 20261203


def bounds(world: int) -> list[tuple[int, int]]:
    """Uneven slices tiling [0, V): sizes in the ratio 1 : 2 : ... (a rank may be small)."""
    cuts = np.cumsum(np.arange(1, world + 1))
    edges = [0] + [int(V * c // cuts[-1]) for c in cuts]
    return [(edges[r], edges[r + 1]) for r in range(world)]


def data(dtype, ignore_index=-100):
    """Full logits (N, V) with confident rows, a row with -inf logits, ignored rows,
    class and sample weights, a grad_output."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((N, V)) * 3.0
    t = rng.integers(0, V, N)
    x[np.arange(N), t] += 8.0  # confident rows: p_target near 1
    t[[2, 7]] = ignore_index
    x[3, :100] = -np.inf  # masked classes: rank 0's whole slice (3 ranks) for this row
    t[3] = 300
    t[4] = 5
    w = rng.uniform(0.5, 2.0, V)
    sw = rng.uniform(0.0, 2.0, N)
    go = rng.standard_normal(N)
    return x.astype(dtype), t, w, sw, go


# An L8 orthogonal array: every pair of the six on/off options below meets in all four
# combinations within 8 rows (the full 2**6 grid runs with XENT_RUN_SLOW=1).
_L8 = ["000000", "000111", "011001", "011110", "101010", "101101", "110011", "110100"]


def cases(full: bool = False):
    """(name, options) over the cross-entropy options: every combination when `full`,
    else each pair of options in all four on/off states, for both dtypes and every
    reduction."""
    rows = (itertools.product([0, 1], repeat=6) if full else
            (tuple(int(b) for b in r) for r in _L8))
    for dt, red, (w, ign, eps, z, cap, sw) in itertools.product(
            ["float32", "float64"], ["mean", "sum", "none"], list(rows)):
        opts = dict(dtype=dt, weight=["w", None][w], ignore_index=[-100, 5][ign],
                    reduction=red, label_smoothing=[0.0, 0.1][eps], z_loss=[0.0, 1e-3][z],
                    softcap=[None, 20.0][cap], sample_weight=[None, "sw"][sw])
        yield "-".join(f"{k}={v}" for k, v in opts.items()), opts


def options(opts, w, sw):
    o = {k: v for k, v in opts.items() if k != "dtype"}
    o["weight"] = None if opts["weight"] is None else w
    o["sample_weight"] = None if opts["sample_weight"] is None else sw
    return o


def run_world(rank: int, world: int, group, full: bool, out: dict) -> None:
    """This rank's loss and gradient slice for every case, on a `world`-rank group."""
    import torch

    import xent.torch

    lo, hi = bounds(world)[rank]
    pre = f"w{world}/"
    for name, opts in cases(full):
        x, t, w, sw, go = data(opts["dtype"], opts["ignore_index"])
        local = torch.tensor(x[:, lo:hi], requires_grad=True)
        o = options(opts, torch.from_numpy(w), torch.from_numpy(sw))
        loss = xent.torch.vocab_parallel_cross_entropy(local, torch.from_numpy(t),
                                                       vocab_start=lo, group=group, **o)
        g = torch.from_numpy(go).to(loss.dtype) if opts["reduction"] == "none" else None
        loss.backward(g)
        out[pre + name + "/loss"] = loss.detach().numpy()
        out[pre + name + "/grad"] = local.grad.numpy()
    # leading axes, once
    x, t, w, sw, go = data("float32")
    local = torch.tensor(x[:, lo:hi].reshape(1, N, hi - lo), requires_grad=True)
    loss = xent.torch.vocab_parallel_cross_entropy(local, torch.from_numpy(t).reshape(1, N),
                                                   vocab_start=lo, group=group,
                                                   label_smoothing=0.2)
    loss.backward()
    out[pre + "lead/loss"], out[pre + "lead/grad"] = loss.detach().numpy(), local.grad[0].numpy()
    # errors found after the gather are raised on every rank
    for key, call in {
        "range": lambda: xent.torch.vocab_parallel_cross_entropy(
            torch.tensor(x[:, lo:hi]), torch.full((N,), V), vocab_start=lo, group=group),
        "gap": lambda: xent.torch.vocab_parallel_cross_entropy(
            torch.tensor(x[:, lo:hi]), torch.from_numpy(t), vocab_start=lo + (rank > 0),
            group=group),
        "weight": lambda: xent.torch.vocab_parallel_cross_entropy(
            torch.tensor(x[:, lo:hi]), torch.from_numpy(t), vocab_start=lo, group=group,
            weight=torch.ones(V + 1)),
    }.items():
        try:
            call()
            out[pre + "error/" + key] = np.array("none")
        except (ValueError, IndexError) as exc:
            out[pre + "error/" + key] = np.array(type(exc).__name__)


def main(rank: int, port: int, out_dir: str, full: bool, world: int = 3) -> None:
    """Three ranks: the default group (3 slices), then ranks 0-1 as a subgroup (2 slices);
    two ranks: the default group (2 slices)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    out: dict = {}
    if world == 3:
        pair = dist.new_group([0, 1])  # every rank takes part in creating it
        run_world(rank, 3, None, full, out)
        if rank < 2:
            run_world(rank, 2, pair, full, out)
    else:
        run_world(rank, world, None, full, out)
    dist.barrier()
    dist.destroy_process_group()
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **out)
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter's teardown of torch (seconds on a loaded machine)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "full",
         int(sys.argv[5]) if len(sys.argv) > 5 else 3)
