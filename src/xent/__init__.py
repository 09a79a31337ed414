"""xent: fast CPU kernels for softmax, log-sum-exp and cross-entropy losses.

OpenMP-parallel C kernels with run-time SIMD dispatch (AVX-512, AVX2, scalar)
behind a NumPy API.  Classes lie on the last axis; float32 and float64 are
computed natively.  See ``xent.show_config()`` for the build in use.
"""

from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_and_grad,
    binary_cross_entropy_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_and_grad,
    binary_cross_entropy_with_logits_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_and_grad,
    sigmoid_focal_loss_grad,
)
from ._config import _apply_placement_env, _apply_simd_env, openmp_enabled, show_config
from ._cross_entropy import (
    cross_entropy,
    cross_entropy_and_grad,
    cross_entropy_grad,
    nll_loss,
    nll_loss_and_grad,
    nll_loss_grad,
    perplexity,
)
from ._distill import (
    kl_div_with_logits,
    kl_div_with_logits_and_grad,
    kl_div_with_logits_grad,
)
from ._focal import focal_loss, focal_loss_and_grad, focal_loss_grad
from ._linear import (
    linear_cross_entropy,
    linear_cross_entropy_and_grad,
    linear_token_scores,
)
from ._metrics import expected_calibration_error
from ._scores import TokenScores, token_scores
from ._softmax import log_softmax, logsumexp, softmax
from ._threads import get_num_threads, set_num_threads
from ._version import __version__

_apply_simd_env()
_apply_placement_env()

__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_and_grad",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_and_grad",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_and_grad",
    "cross_entropy_grad",
    "expected_calibration_error",
    "focal_loss",
    "focal_loss_and_grad",
    "focal_loss_grad",
    "get_num_threads",
    "kl_div_with_logits",
    "kl_div_with_logits_and_grad",
    "kl_div_with_logits_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_and_grad",
    "linear_token_scores",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "nll_loss_and_grad",
    "nll_loss_grad",
    "openmp_enabled",
    "perplexity",
    "set_num_threads",
    "show_config",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_and_grad",
    "sigmoid_focal_loss_grad",
    "softmax",
    "token_scores",
    "TokenScores",
]
