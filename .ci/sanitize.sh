#!/usr/bin/env bash
# Build xent with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy of the
# tree and run the fast tests (small shapes) against that build.
#
# Usage: .ci/sanitize.sh [pytest args]      (default: tests -k "not slow" -x; paths are
#        relative to the project root, e.g. .ci/sanitize.sh tests/test_fuzz.py)
# Environment:
#   PYTHON              interpreter (default python3); needs Cython, setuptools, numpy, pytest
#   XENT_SAN_NO_TORCH=1 make `import torch` fail in the tests (PyTorch comparisons skipped),
#                       for when torch's own libraries upset ASan (default 0: torch 2.13
#                       CPU imports and runs fine under ASan)
#   XENT_SAN_KEEP=1     keep the scratch build directory
#   XENT_SAN_ALIGNMENT=1 also check pointer alignment (UBSan; see below)
#   XENT_FUZZ_EXAMPLES  forwarded to tests/test_fuzz.py (default here 10)
#   XENT_RACE_SCALE     multiplies how long the racing-target tests run (tests/
#                       test_hardening.py, test_concurrency.py; default here 10, about
#                       10 s of racing calls per test) and their timeouts: the
#                       instrumented build is slower, and only a longer race makes an
#                       unchecked target use likely to be seen
# Any ASan report (heap overflow, use after free, ...) or UBSan report aborts the process,
# which fails the run. Leak detection is off (CPython does not free everything at exit).
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
CC="${CC:-gcc}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/xent-asan.XXXXXX")"
cleanup() { if [ "${XENT_SAN_KEEP:-0}" = "1" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
t0=$SECONDS
log() { echo "[sanitize +$((SECONDS - t0))s] $*"; }

# 1. Copy the sources (not the in-place build products) and build with the sanitizers.
mkdir -p "$WORK/tree"
(cd "$SRC" && tar cf - --exclude=build --exclude='*.so' --exclude='_core.c' \
    --exclude=.git --exclude='.venv*' --exclude=__pycache__ --exclude=.hypothesis \
    --exclude=dist --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.benchmarks \
    .) | (cd "$WORK/tree" && tar xf -)  # whole tree: some tests read README.md etc.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
# xent deliberately accepts misaligned NumPy arrays (tests/test_cross_entropy.py::
# test_misaligned_logits_and_out) and the scalar path then loads floats through
# misaligned pointers: UB in ISO C, harmless on x86. Off by default so other reports
# stay visible; XENT_SAN_ALIGNMENT=1 turns the check back on.
if [ "${XENT_SAN_ALIGNMENT:-0}" != "1" ]; then SAN="$SAN -fno-sanitize=alignment"; fi
log "building with $SAN"
# The flags go into CC so that they also reach setup.py's OpenMP probe link (a probe
# compiled with ASan but linked without it fails, which would silently give a serial build).
(cd "$WORK/tree" && CC="$CC $SAN" \
    "$PY" setup.py build_ext --inplace -q > "$WORK/build.log" 2>&1) || {
    tail -40 "$WORK/build.log"; echo "sanitize: build FAILED"; exit 1; }
log "built"

# 2. Run the tests with the ASan/UBSan runtimes preloaded into the (unsanitized) Python.
LIBASAN="$("$CC" -print-file-name=libasan.so)"
LIBUBSAN="$("$CC" -print-file-name=libubsan.so)"
[ -f "$LIBASAN" ] || { echo "sanitize: libasan not found ($LIBASAN)"; exit 1; }
PRE="$LIBASAN"
[ -f "$LIBUBSAN" ] && PRE="$PRE:$LIBUBSAN"
SITE="$WORK/site"
mkdir -p "$SITE"
if [ "${XENT_SAN_NO_TORCH:-0}" = "1" ]; then
    printf 'import sys\nsys.modules["torch"] = None  # sanitize.sh: skip PyTorch comparisons\n' \
        > "$SITE/sitecustomize.py"
fi
if [ $# -eq 0 ]; then set -- tests -k "not slow" -x; fi
log "running pytest $*"
cd "$WORK/tree"  # test paths are relative to the (copied) project root
env LD_PRELOAD="$PRE" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    PYTHONPATH="$SITE:$WORK/tree/src:$WORK/tree/tests" \
    XENT_FUZZ_EXAMPLES="${XENT_FUZZ_EXAMPLES:-10}" \
    XENT_RACE_SCALE="${XENT_RACE_SCALE:-10}" \
    "$PY" -c 'import xent, sys; f = xent._kernels._core.__file__; print("xent from", f, "openmp:", xent.openmp_enabled()); assert sys.argv[1] in f' "$WORK/tree"
# Reports also go to files: pytest's output capture swallows a report printed by a test
# that aborts the process.
set +e
env LD_PRELOAD="$PRE" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1:log_path=$WORK/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$WORK/ubsan" \
    PYTHONPATH="$SITE:$WORK/tree/src:$WORK/tree/tests" \
    XENT_FUZZ_EXAMPLES="${XENT_FUZZ_EXAMPLES:-10}" \
    XENT_RACE_SCALE="${XENT_RACE_SCALE:-10}" \
    "$PY" -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# (ls lists whichever of the two kinds exist; `ls a b` fails when either glob is empty)
if [ -n "$(ls "$WORK"/asan.* "$WORK"/ubsan.* 2> /dev/null || true)" ]; then
    echo "sanitize: SANITIZER REPORTS:"
    cat "$WORK"/asan.* "$WORK"/ubsan.* 2> /dev/null | grep -v "in _Py\|in PyObject_\|in Py_" | head -80
    exit 1
fi
[ "$rc" -eq 0 ] || { echo "sanitize: pytest failed (exit $rc)"; exit "$rc"; }
log "done: no sanitizer reports"
