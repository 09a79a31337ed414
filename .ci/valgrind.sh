#!/usr/bin/env bash
# Run a smoke workload (.ci/memcheck_smoke.py: every public function, small shapes, odd
# layouts, error paths, 1 and 2 threads) under valgrind memcheck against a -O1 -g build
# in a scratch copy of the tree.  Fails only on memory errors (invalid reads/writes,
# uninitialised values, bad frees) whose stack goes through xent's extension; reports in
# Python/NumPy/libgomp are counted and listed but do not fail the run.
#
# Exit status 0 only if the smoke workload completed and memcheck found nothing in xent.
# (--error-exitcode=99 keeps memcheck's verdict apart from a failing workload's exit 1.)
# Usage: .ci/valgrind.sh
# Environment: PYTHON (default python3), XENT_VG_KEEP=1 (keep scratch dir),
#              XENT_VG_LOG=path (copy the full memcheck log there)
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
# the real interpreter, not a wrapper script (pyenv shims): valgrind must run Python itself
PY="$("$PY" -c 'import sys; print(sys.executable)')"
command -v valgrind > /dev/null || { echo "valgrind.sh: valgrind not installed"; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/xent-vg.XXXXXX")"
cleanup() { if [ "${XENT_VG_KEEP:-0}" = "1" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
t0=$SECONDS
log() { echo "[valgrind +$((SECONDS - t0))s] $*"; }

mkdir -p "$WORK/tree"
(cd "$SRC" && tar cf - --exclude=build --exclude='*.so' --exclude='_core.c' \
    --exclude=__pycache__ setup.py pyproject.toml MANIFEST.in src) | (cd "$WORK/tree" && tar xf -)
log "building (-O1 -g)"
# setup.py's -O3 comes after CFLAGS; -g keeps line numbers, and valgrind handles -O3 code.
(cd "$WORK/tree" && CFLAGS="-g -fno-omit-frame-pointer" \
    "$PY" setup.py build_ext --inplace -q > "$WORK/build.log" 2>&1) || {
    tail -40 "$WORK/build.log"; echo "valgrind.sh: build FAILED"; exit 1; }
log "running memcheck"
cd "$WORK"
set +e
PYTHONMALLOC=malloc PYTHONPATH="$WORK/tree/src" OMP_NUM_THREADS=2 \
    valgrind --tool=memcheck --error-exitcode=99 --leak-check=no --track-origins=no \
    --num-callers=30 --log-file="$WORK/memcheck.log" \
    "$PY" "$SRC/.ci/memcheck_smoke.py"
rc=$?
set -e
[ -n "${XENT_VG_LOG:-}" ] && cp "$WORK/memcheck.log" "$XENT_VG_LOG"
"$PY" - "$WORK/memcheck.log" "$rc" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
rc = int(sys.argv[2])
blocks = re.split(r"\n==\d+== \n", text)
kinds = ("Invalid read", "Invalid write", "uninitialised", "Invalid free",
         "Mismatched free", "Source and destination overlap", "Conditional jump")
errs = [b for b in blocks if any(k in b for k in kinds)]
ours = [b for b in errs if re.search(r"_core\.cpython|xent_|/xent/", b)]
m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
print(f"memcheck: exit {rc}, ERROR SUMMARY {m.group(1) if m else '?'}; "
      f"{len(errs)} error blocks, {len(ours)} in xent")
others = {}
for b in errs:
    if b in ours:
        continue
    kind = next(k for k in kinds if k in b)
    frame = re.search(r"(?:at|by) 0x[0-9A-F]+: (.*)", b)
    key = f"{kind} @ {frame.group(1) if frame else '?'}"
    others[key] = others.get(key, 0) + 1
for key, n in sorted(others.items(), key=lambda kv: -kv[1])[:15]:
    print(f"  (not xent, ignored) {n} x {key}")
for b in ours[:20]:
    print(b)
if ours:
    sys.exit(1)
if rc not in (0, 99):  # 99: memcheck errors (all outside xent); anything else: smoke failed
    print(f"memcheck: the smoke workload itself failed (exit {rc})")
    sys.exit(1)
PYEOF
log "done"
