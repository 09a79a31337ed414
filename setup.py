"""Build the xent._kernels._core extension (metadata lives in pyproject.toml).

OpenMP is found by compiling and linking a small probe with the configured
compiler.  Without it, or with XENT_DISABLE_OPENMP=1, a serial extension is
built and a warning says so.  SIMD variants are selected at run time
(xent_dispatch.c); the command line never gets -march flags unless the
developer opts in with XENT_MARCH=native for a local build.
"""

import os
import shutil
import sys
import tempfile
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = Path("src/xent/_kernels")
OMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _openmp_flags(compiler):
    """Return (compile_flags, link_flags) that work with this compiler, or None."""
    if os.environ.get("XENT_DISABLE_OPENMP", "0") not in ("", "0"):
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp:llvm"], []), (["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    extra_c = os.environ.get("CPPFLAGS", "").split()
    tmp = tempfile.mkdtemp(prefix="xent-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OMP_PROBE)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags + extra_c)
                compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=lflags)
                return cflags, lflags
            except Exception:  # noqa: BLE001 - any failure means "try the next"
                continue
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def _compile_in_parallel(compiler, jobs: int) -> None:
    """Compile an extension's sources `jobs` at a time (setuptools compiles them one by one;
    the six SIMD translation units dominate the build).  XENT_BUILD_JOBS overrides `jobs`."""
    if jobs <= 1:
        return

    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=False,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, [o for o in objects if o in build]))
        return objects

    compiler.compile = compile


class BuildExt(build_ext):
    def build_extensions(self):
        compiler = self.compiler
        if compiler.compiler_type != "msvc":
            jobs = int(os.environ.get("XENT_BUILD_JOBS", os.cpu_count() or 1))
            _compile_in_parallel(compiler, jobs)
        msvc = compiler.compiler_type == "msvc"
        omp = _openmp_flags(compiler)
        if omp is None:
            warnings.warn(
                "xent: building WITHOUT OpenMP (XENT_DISABLE_OPENMP set or no working "
                "OpenMP found); every kernel will run on one thread.",
                stacklevel=1,
            )
            print("*" * 72 + "\nxent: OpenMP disabled -- serial build\n" + "*" * 72)
        if msvc:
            base = ["/O2", "/std:c11", "/fp:precise"]
        else:
            base = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math",
                    "-Wall", "-Wno-unknown-pragmas", "-Wno-psabi"]
            if os.environ.get("XENT_MARCH"):
                base.append("-march=" + os.environ["XENT_MARCH"])
        cflags = base + (omp[0] if omp else [])
        lflags = omp[1] if omp else []
        cc = " ".join(getattr(compiler, "compiler_so", None) or [compiler.compiler_type])
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = lflags + ext.extra_link_args
            ext.define_macros += [
                ("XENT_HAVE_OPENMP", "1" if omp else "0"),
                ("XENT_BUILD_CC", '"' + cc.replace('"', "'").replace("\\", "/") + '"'),
                ("XENT_BUILD_FLAGS", '"' + " ".join(cflags + lflags) + '"'),
            ]
        super().build_extensions()


sources = ["src/xent/_kernels/_core.pyx"] + sorted(
    str(p) for p in KERNELS.glob("xent_*.c")
)
extensions = [
    Extension(
        "xent._kernels._core",
        sources=sources,
        include_dirs=[str(KERNELS)],
        depends=[str(p) for p in sorted(KERNELS.glob("*.h")) + sorted(KERNELS.glob("*.def"))]
        + [str(KERNELS / "_core.pxd")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
