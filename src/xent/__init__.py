"""xent: fast CPU kernels for softmax, log-sum-exp and cross-entropy losses.

OpenMP-parallel C kernels with run-time SIMD dispatch (AVX-512, AVX2, scalar)
behind a NumPy API.  Classes lie on the last axis; float32 and float64 are
computed natively.  See ``xent.show_config()`` for the build in use.
"""

from ._loader import load_core as _load_core

_load_core()

from ._config import _apply_simd_env, openmp_enabled, show_config  # noqa: E402
from ._scores import TokenScores, token_scores  # noqa: E402
from ._softmax import log_softmax, logsumexp, softmax  # noqa: E402
from ._threads import get_num_threads, set_num_threads  # noqa: E402
from ._version import __version__  # noqa: E402

_apply_simd_env()

__all__ = [
    "__version__",
    "get_num_threads",
    "log_softmax",
    "logsumexp",
    "openmp_enabled",
    "set_num_threads",
    "show_config",
    "softmax",
    "token_scores",
    "TokenScores",
]
