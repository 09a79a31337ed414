"""show_config, ``python -m xent info``, XENT_SIMD, and the thread-count policy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import SIMD_ORDER

import xent
from xent._kernels import _core

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))


def _run(code_or_args, **env):
    """Run a fresh interpreter that imports this same xent; returns CompletedProcess."""
    e = dict(os.environ)
    for k in ("XENT_SIMD", "OMP_NUM_THREADS"):
        e.pop(k, None)
    e.update(env)
    e["PYTHONPATH"] = os.pathsep.join([_PKG_PARENT] + [p for p in [e.get("PYTHONPATH")] if p])
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=e,
                          timeout=120, check=False)


def test_show_config_fields(capsys):
    xent.show_config()
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"xent {xent.__version__}"
    for field in ("python", "numpy", "cpu", "compiler", "flags", "openmp", "threads", "simd"):
        assert any(ln.split()[0] == field for ln in lines[1:]), field
    assert np.__version__ in text
    assert ("openmp          on" in text) == xent.openmp_enabled()
    simd_line = next(ln for ln in lines if ln.split()[0] == "simd")
    assert simd_line.split()[1] == _core.simd_active()
    assert f"best supported: {_core.simd_supported()}" in simd_line
    threads_line = next(ln for ln in lines if ln.split()[0] == "threads")
    assert threads_line.split()[1] == str(xent.get_num_threads())


def test_config_types():
    assert isinstance(xent.openmp_enabled(), bool)
    assert _core.simd_supported() in SIMD_ORDER
    assert _core.simd_active() in SIMD_ORDER
    info = _core.build_info()
    assert info["compiler"]
    assert "-O" in info["flags"] or "/O" in info["flags"]


def test_python_m_xent_info():
    r = _run(["-m", "xent", "info"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"xent {xent.__version__}")
    assert "simd" in r.stdout and "openmp" in r.stdout


def test_python_m_xent_requires_a_command():
    r = _run(["-m", "xent"])
    assert r.returncode != 0
    assert "info" in r.stderr


_ACTIVE = "import xent; from xent._kernels import _core; print(_core.simd_active())"


@pytest.mark.parametrize("name", SIMD_ORDER)
def test_xent_simd_env_selects_path(name):
    r = _run(_ACTIVE, XENT_SIMD=name)
    assert r.returncode == 0, r.stderr
    best = _core.simd_supported()
    expect = name if SIMD_ORDER.index(name) <= SIMD_ORDER.index(best) else best
    assert r.stdout.strip() == expect


def test_xent_simd_scalar_shows_in_config():
    r = _run(["-m", "xent", "info"], XENT_SIMD="scalar")
    assert r.returncode == 0, r.stderr
    simd_line = next(ln for ln in r.stdout.splitlines() if ln.split()[0] == "simd")
    assert simd_line.split()[1] == "scalar"


def test_invalid_xent_simd_warns_and_is_ignored():
    r = _run("import warnings; warnings.simplefilter('always')\n" + _ACTIVE, XENT_SIMD="sse9")
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "sse9" in r.stderr
    assert r.stdout.strip() == _core.simd_supported()


def test_invalid_xent_simd_warns_in_process(monkeypatch):
    from xent._config import _apply_simd_env

    before = _core.simd_active()
    monkeypatch.setenv("XENT_SIMD", "bogus")
    with pytest.warns(RuntimeWarning, match="bogus"):
        _apply_simd_env()
    assert _core.simd_active() == before


def test_simd_select_rejects_unknown_names():
    with pytest.raises(ValueError, match="sse"):
        _core.simd_select("sse")


def test_set_get_num_threads(restore_threads):
    xent.set_num_threads(1)
    assert xent.get_num_threads() == 1
    xent.set_num_threads(2)
    assert xent.get_num_threads() == (2 if xent.openmp_enabled() else 1)
    xent.set_num_threads(-1)
    assert xent.get_num_threads() == (_core.omp_max_threads() if xent.openmp_enabled() else 1)
    xent.set_num_threads(np.int64(1))
    assert xent.get_num_threads() == 1
    # The package default is what num_threads=None uses: results stay identical.
    x = np.random.default_rng(0).standard_normal((300, 700))
    assert np.array_equal(xent.softmax(x), xent.softmax(x, num_threads=1))


@pytest.mark.parametrize("n, exc", [(0, ValueError), (1.5, TypeError), (True, TypeError),
                                    ("2", TypeError)])
def test_set_num_threads_errors(restore_threads, n, exc):
    before = xent.get_num_threads()
    with pytest.raises(exc, match="num_threads"):
        xent.set_num_threads(n)
    assert xent.get_num_threads() == before


@pytest.mark.parametrize("omp", ["1", "3"])
def test_default_threads_honour_omp_num_threads(omp):
    r = _run("import xent; print(xent.get_num_threads(), xent.openmp_enabled())",
             OMP_NUM_THREADS=omp)
    assert r.returncode == 0, r.stderr
    n, enabled = r.stdout.split()
    assert int(n) == (int(omp) if enabled == "True" else 1)


def test_serial_build_reports_one_thread(restore_threads):
    if xent.openmp_enabled():
        pytest.skip("OpenMP build")
    xent.set_num_threads(4)
    assert xent.get_num_threads() == 1


def test_this_session_honours_xent_simd():
    """Under CI's XENT_SIMD runs, the whole session really runs on that path (every
    test that switches paths restores it)."""
    want = os.environ.get("XENT_SIMD", "").strip().lower()
    if want not in SIMD_ORDER:
        pytest.skip("XENT_SIMD not set")
    best = _core.simd_supported()
    assert _core.simd_active() == (
        want if SIMD_ORDER.index(want) <= SIMD_ORDER.index(best) else best)
