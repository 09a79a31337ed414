#!/usr/bin/env bash
# Build an sdist and a wheel (the wheel FROM the sdist), install the wheel in a fresh
# venv outside the source tree and run the test suite against the installed package.
#
# Usage: .ci/wheel_check.sh [extra pytest args]
# Environment:
#   PYTHON                 interpreter to build with and base the venv on (default: python3)
#   XENT_CHECK_TORCH=1     also install torch==2.13.0 in the venv (default 1; 0 = the
#                          PyTorch comparisons are skipped via importorskip). Never unpinned.
#   XENT_WHEEL_TESTS       the test files (relative to tests/) to run against the wheel;
#                          default: the whole suite.
#   XENT_DISABLE_OPENMP=1  builds the serial extension (read by setup.py);
#   XENT_WHEEL_EXPECT_OPENMP=0|1  fails unless xent.openmp_enabled() says so.
#   XENT_TORCH_PIP_ARGS    extra pip args for torch, e.g. on a plain CI runner
#                          "--index-url https://download.pytorch.org/whl/cpu
#                           --extra-index-url https://pypi.org/simple" (CPU wheel, no CUDA).
#   XENT_KEEP_TMP=1        keep the temporary directory (printed at the end).
#   XENT_AUDITWHEEL=1      run `auditwheel show` on the wheel if auditwheel is available.
# Exit status: non-zero if the build, the sdist check, the install or any test fails.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/xent-wheel.XXXXXX")"
cleanup() { if [ "${XENT_KEEP_TMP:-0}" = "1" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
t0=$SECONDS
log() { echo "[wheel_check +$((SECONDS - t0))s] $*"; }

# 1. sdist, then a wheel built from that sdist (python -m build does this by default),
#    with a pinned `build` in its own venv: the interpreter need not have it.
log "installing build==1.2.2 into $TMP/buildenv"
"$PY" -m venv "$TMP/buildenv"
BPY="$TMP/buildenv/bin/python"
[ -x "$BPY" ] || BPY="$TMP/buildenv/Scripts/python.exe"
"$BPY" -m pip install -q "build==1.2.2" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
log "building sdist + wheel from sdist into $TMP/dist"
"$BPY" -m build --outdir "$TMP/dist" "$SRC" > "$TMP/build.log" 2>&1 || {
    tail -50 "$TMP/build.log"; echo "wheel_check: build FAILED"; exit 1; }
SDIST="$(ls "$TMP"/dist/*.tar.gz)"
WHEEL="$(ls "$TMP"/dist/*.whl)"
log "built $(basename "$SDIST") and $(basename "$WHEEL")"

# 2. sdist contents: every kernel/boundary source is shipped, no generated or binary file.
"$PY" - "$SDIST" "$SRC" <<'PYEOF'
import pathlib, subprocess, sys, tarfile
sdist, src = sys.argv[1], pathlib.Path(sys.argv[2])
names = tarfile.open(sdist).getnames()
root = names[0].split("/")[0]
rel = {n[len(root) + 1:] for n in names if "/" in n}
# every tracked (or, outside git, present) source under src/xent must be in the sdist
try:
    tracked = subprocess.run(["git", "-C", str(src), "ls-files", "src/xent"], check=True,
                             capture_output=True, text=True).stdout.split()
except (OSError, subprocess.CalledProcessError):
    tracked = [str(p.relative_to(src)) for p in (src / "src/xent").rglob("*") if p.is_file()]
want = [f for f in tracked if f.endswith((".py", ".pyi", ".pyx", ".pxi", ".pxd", ".h", ".c",
                                          ".def", "py.typed"))
        and f != "src/xent/_kernels/_core.c"]
missing = sorted(set(want) - rel)
bad_suffix = (".so", ".pyd", ".o", ".obj", ".pyc", ".html", ".dylib", ".dll")
generated = sorted(n for n in rel if n.endswith(bad_suffix) or n == "src/xent/_kernels/_core.c"
                   or "__pycache__" in n or n.startswith("build/"))
for required in ("pyproject.toml", "setup.py", "MANIFEST.in", "PKG-INFO"):
    if required not in rel:
        missing.append(required)
print(f"sdist: {len(rel)} entries, {len(want)} required sources")
if missing:
    print("sdist is MISSING:", *missing, sep="\n  ")
if generated:
    print("sdist contains GENERATED/binary files:", *generated, sep="\n  ")
sys.exit(1 if missing or generated else 0)
PYEOF
log "sdist contents OK"

# 3. Optional: auditwheel show (Linux wheels only).
if [ "${XENT_AUDITWHEEL:-1}" = "1" ] && command -v auditwheel > /dev/null 2>&1; then
    auditwheel show "$WHEEL" || true
fi

# 4. Fresh venv outside the tree, install the wheel and the test deps.
log "creating venv"
"$PY" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
[ -x "$VPY" ] || VPY="$TMP/venv/Scripts/python.exe"
if [ "${XENT_CHECK_TORCH:-1}" = "1" ]; then
    log "installing the wheel with its [test] extra (torch==2.13.0 included)"
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q --no-compile "${WHEEL}[test]" ${XENT_TORCH_PIP_ARGS:-} \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
else
    "$VPY" -m pip install -q --no-compile "$WHEEL" "pytest>=7" "hypothesis>=6" \
        "threadpoolctl>=3" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
fi
if [ -n "${XENT_WHEEL_EXPECT_OPENMP:-}" ]; then
    "$VPY" -c 'import sys, xent; sys.exit(int(xent.openmp_enabled() != (sys.argv[1] == "1")))' \
        "$XENT_WHEEL_EXPECT_OPENMP" || {
        echo "wheel_check: openmp_enabled() is not ${XENT_WHEEL_EXPECT_OPENMP}"; exit 1; }
    log "openmp_enabled() == ${XENT_WHEEL_EXPECT_OPENMP} as expected"
fi

# 5. Run the tests from outside the tree against the installed wheel.  importlib mode
#    keeps pytest from putting the tree on sys.path; only tests/ itself is added (for the
#    helper modules the tests import), never src/.
log "running tests"
cd "$TMP"
# (the runner is a file, not stdin: multiprocessing's spawn re-imports the main script)
cat > "$TMP/run_tests.py" <<'PYEOF'
import os
import sys


def main():
    import pytest

    venv, src = os.path.realpath(os.environ["VENV"]), os.environ["SRC"]
    files = os.environ.get("XENT_WHEEL_TESTS", "").split()
    paths = [os.path.join(src, "tests", f) for f in files] or [os.path.join(src, "tests")]
    args = [*paths, "-q", "-p", "no:cacheprovider",
            "--import-mode=importlib", *sys.argv[1:]]
    rc = pytest.main(args)
    import xent

    where = os.path.realpath(xent.__file__)
    if not where.startswith(venv + os.sep):
        print(f"wheel_check: xent was imported from {where}, not from the venv {venv}")
        return 3
    print(f"wheel_check: tested xent {xent.__version__} from {where}")
    return int(rc)


if __name__ == "__main__":  # spawned children re-import this file as __mp_main__
    sys.exit(main())
PYEOF
VENV="$TMP/venv" SRC="$SRC" PYTHONPATH="$SRC/tests" "$VPY" "$TMP/run_tests.py" "$@"
log "done: wheel and sdist OK"
