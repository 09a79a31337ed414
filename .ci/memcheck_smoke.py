"""Smoke workload for .ci/valgrind.sh: every public function, small shapes, odd layouts,
the error paths, 1 and 2 threads.  Functions not in this xent build are skipped.
Also usable on its own: `python .ci/memcheck_smoke.py` (prints the number of calls)."""

import numpy as np

import xent

rng = np.random.default_rng(0)
calls = 0


def call(name, *args, expect=None, **kw):
    global calls
    fn = getattr(xent, name, None)
    if fn is None:
        return None
    calls += 1
    try:
        return fn(*args, **kw)
    except Exception as e:  # noqa: BLE001
        if expect is None or not isinstance(e, expect):
            raise
        return None


def workload():
    for dt in (np.float32, np.float64):
        for shape in [(1, 1), (3, 5), (2, 3, 17), (4, 70), (0, 4), (2, 0), (1, 1030)]:
            x = rng.standard_normal(shape).astype(dt) * 3
            if x.size:
                x.reshape(-1)[0] = -np.inf
            c = shape[-1]
            for nt in (1, 2):
                call("logsumexp", x, num_threads=nt)
                call("softmax", x, num_threads=nt)
                call("log_softmax", x[..., ::-1], num_threads=nt)
                call("logsumexp", x, axis=0, num_threads=nt)
                if c == 0:
                    continue
                t = rng.integers(0, c, size=shape[:-1])
                if t.size:
                    t.reshape(-1)[0] = -100
                q = np.abs(rng.standard_normal(shape)).astype(dt)
                w = rng.uniform(0.5, 1.5, size=c)
                for fam in ("cross_entropy", "nll_loss", "focal_loss"):
                    for red in ("none", "mean", "sum"):
                        call(fam, x, t, reduction=red, num_threads=nt)
                        call(fam + "_grad", x, t, reduction=red, num_threads=nt)
                        call(fam + "_and_grad", x, t, reduction=red, num_threads=nt)
                call("cross_entropy_and_grad", x, q, label_smoothing=0.1, z_loss=1e-3, softcap=5.0,
                     weight=w, num_threads=nt)
                call("cross_entropy_and_grad", x, t, weight=w, label_smoothing=0.2,
                     sample_weight=np.ones(shape[:-1]), out=x.copy(), num_threads=nt)
                call("perplexity", x, t, num_threads=nt)
                call("expected_calibration_error", x, t, n_bins=4, num_threads=nt)
                call("token_scores", x, t, top_k=min(3, c), num_threads=nt)
                call("token_scores", x, None, top_k=c, temperature=0.7, num_threads=nt)
                y = rng.uniform(0, 1, size=shape).astype(dt)
                for fam in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss",
                            "kl_div_with_logits"):
                    other = x[::-1].copy() if fam == "kl_div_with_logits" else y
                    call(fam, x, other, num_threads=nt)
                    call(fam + "_and_grad", x, other, num_threads=nt)
                call("binary_cross_entropy_and_grad", y, y[::-1].copy(), num_threads=nt)
                # error paths
                bad = t.copy()
                if bad.size:
                    bad.reshape(-1)[-1] = c + 3
                    call("cross_entropy", x, bad, expect=IndexError)
                    call("cross_entropy_and_grad", x, bad, expect=IndexError)
                    call("nll_loss", x, bad, expect=IndexError)
                    call("perplexity", x, bad, expect=IndexError)
                    call("focal_loss", x, bad, expect=IndexError)
                    call("token_scores", x, bad, expect=IndexError)
                call("cross_entropy", np.zeros(shape, np.int32), t, expect=TypeError)
                call("cross_entropy", x, t.astype(np.complex64), expect=TypeError)
                call("cross_entropy", x, t, reduction="avg", expect=ValueError)
                call("softmax", x, out=np.empty((1,), dt), expect=ValueError)
                call("cross_entropy_grad", x, t, out=np.empty(shape, np.float16), expect=ValueError)


def aliasing_and_races():
    """Hostile callers (issue 14): out= overlapping every other argument, and a thread
    rewriting the targets while calls run (values may be wrong; memory must stay valid)."""
    import threading

    for dt in (np.float32, np.float64):
        for c in (10, 70):
            buf = rng.standard_normal((8, c)).astype(dt)
            lab = buf.view(np.int64 if dt == np.float64 else np.int32)[:, 0]
            if dt == np.float64:
                lab[:] = rng.integers(0, c, size=8)
                call("cross_entropy_and_grad", buf, lab, out=buf)
                call("nll_loss_grad", buf, lab, out=buf, expect=IndexError)
            x = rng.standard_normal((9, c)).astype(dt)
            big = np.abs(rng.standard_normal((9, c)).astype(dt))
            call("cross_entropy_and_grad", x[1:], big[1:], out=big[:-1])
            call("cross_entropy_grad", x[:-1], rng.integers(0, c, 8), out=x[1:])
            w = x[0].copy()
            call("cross_entropy_and_grad", x, rng.integers(0, c, 9), weight=x[0], out=x)
            call("cross_entropy_and_grad", x, rng.integers(0, c, 9), weight=w,
                 sample_weight=x[:, 0], out=x)
            call("logsumexp", x, out=x[-1, :9])
            call("softmax", x[:-1], out=x[1:])
        t = rng.integers(0, 40, size=64)
        x = rng.standard_normal((64, 40)).astype(dt)
        stop = threading.Event()

        def flip(t=t, stop=stop):
            vals = np.array([1, -100, 2**40, -7, 39, 40])
            i = 0
            while not stop.is_set():
                t[i % t.size] = vals[i % vals.size]
                i += 1

        th = threading.Thread(target=flip)
        th.start()
        try:
            for _ in range(30):
                for name in ("cross_entropy", "cross_entropy_and_grad", "nll_loss_grad",
                             "focal_loss_grad"):
                    call(name, x, t, num_threads=2, expect=IndexError)
        finally:
            stop.set()
            th.join()


from xent._kernels import _core  # noqa: E402

best = _core.simd_supported()  # valgrind hides AVX-512, so this is at most avx2 under it
paths = _core.SIMD_NAMES[: list(_core.SIMD_NAMES).index(best) + 1]
for path in paths:
    _core.simd_select(path)
    workload()
    aliasing_and_races()
_core.simd_select(best)
print(f"memcheck smoke: {calls} calls OK on SIMD paths {', '.join(paths)}")
