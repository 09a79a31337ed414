"""logsumexp, softmax and log_softmax: xent vs NumPy vs PyTorch."""

from __future__ import annotations

from providers import label, make_logits, need_xent, np_logsumexp, np_softmax

FAMILY = "softmax"


def _torch_tensor(lib, x):
    return lib.from_numpy(x)


def bench_logsumexp(benchmark, lib, provider, dtype, shape, threads):
    x = make_logits(shape, dtype)
    if provider == "xent":
        fn = need_xent("logsumexp")
        run = lambda: fn(x, num_threads=threads)  # noqa: E731
    elif provider == "numpy":
        run = lambda: np_logsumexp(x)  # noqa: E731
    else:
        xt = _torch_tensor(lib, x)
        run = lambda: lib.logsumexp(xt, -1)  # noqa: E731
    label(benchmark, "logsumexp", provider, dtype, shape, threads)
    benchmark(run)


def _bench_softmax(benchmark, lib, provider, dtype, shape, threads, log):
    name = "log_softmax" if log else "softmax"
    x = make_logits(shape, dtype)
    if provider == "xent":
        fn = need_xent(name)
        run = lambda: fn(x, num_threads=threads)  # noqa: E731
    elif provider == "numpy":
        run = lambda: np_softmax(x, log)  # noqa: E731
    else:
        xt = _torch_tensor(lib, x)
        tfn = getattr(lib, name)
        run = lambda: tfn(xt, -1)  # noqa: E731
    label(benchmark, name, provider, dtype, shape, threads)
    benchmark(run)


def bench_softmax(benchmark, lib, provider, dtype, shape, threads):
    _bench_softmax(benchmark, lib, provider, dtype, shape, threads, log=False)


def bench_log_softmax(benchmark, lib, provider, dtype, shape, threads):
    _bench_softmax(benchmark, lib, provider, dtype, shape, threads, log=True)
