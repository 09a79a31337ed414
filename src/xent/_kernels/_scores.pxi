# token_scores family: per-row lse, entropy, target logprob/rank, top-k (xent_scores.h).

cdef extern from "xent_kernels.h" nogil:
    ctypedef struct xent_scores_args_f32:
        const int64_t *target
        int64_t ignore_index
        double temperature
        int64_t top_k
        float *lse
        float *entropy
        float *logprob
        int64_t *rank
        float *top_logprobs
        int64_t *top_indices
    ctypedef struct xent_scores_args_f64:
        const int64_t *target
        int64_t ignore_index
        double temperature
        int64_t top_k
        double *lse
        double *entropy
        double *logprob
        int64_t *rank
        double *top_logprobs
        int64_t *top_indices
    int64_t xent_token_scores_rows_f32(const float *x, int64_t n, int64_t c,
                                       const xent_scores_args_f32 *a, int nt)
    int64_t xent_token_scores_rows_f64(const double *x, int64_t n, int64_t c,
                                       const xent_scores_args_f64 *a, int nt)


def token_scores_rows(const floating[:, ::1] x, const int64_t[::1] target,
                      int64_t ignore_index, double temperature,
                      floating[::1] lse, floating[::1] entropy,
                      floating[::1] logprob, int64_t[::1] rank,
                      floating[:, ::1] top_logprobs, int64_t[:, ::1] top_indices,
                      int n_threads):
    """Row-wise token scores; see xent.token_scores.

    `target`, `logprob` and `rank` are all None or all arrays of length n.
    Returns the number of out-of-range targets (not ignore_index).
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], k = top_logprobs.shape[1]
    cdef bint has_t = target is not None
    cdef xent_scores_args_f32 a32
    cdef xent_scores_args_f64 a64
    cdef int64_t bad = 0
    if lse.shape[0] != n or entropy.shape[0] != n:
        raise ValueError("token_scores_rows: lse/entropy have the wrong length")
    if has_t and (logprob is None or rank is None or target.shape[0] != n
                  or logprob.shape[0] != n or rank.shape[0] != n):
        raise ValueError("token_scores_rows: target/logprob/rank have the wrong length")
    if (top_logprobs.shape[0] != n or top_indices.shape[0] != n
            or top_indices.shape[1] != k):
        raise ValueError("token_scores_rows: top_logprobs/top_indices have the wrong shape")
    if not temperature > 0:
        raise ValueError("token_scores_rows: temperature must be > 0")
    if n == 0:
        return 0
    if c == 0 or k > c or k < 0:
        raise ValueError("token_scores_rows: need 0 <= top_k <= C and C >= 1")
    if floating is float:
        a32.target = &target[0] if has_t else NULL
        a32.ignore_index = ignore_index
        a32.temperature = temperature
        a32.top_k = k
        a32.lse = &lse[0]
        a32.entropy = &entropy[0]
        a32.logprob = &logprob[0] if has_t else NULL
        a32.rank = &rank[0] if has_t else NULL
        a32.top_logprobs = &top_logprobs[0, 0] if k > 0 else NULL
        a32.top_indices = &top_indices[0, 0] if k > 0 else NULL
        with nogil:
            bad = xent_token_scores_rows_f32(&x[0, 0], n, c, &a32, n_threads)
    else:
        a64.target = &target[0] if has_t else NULL
        a64.ignore_index = ignore_index
        a64.temperature = temperature
        a64.top_k = k
        a64.lse = &lse[0]
        a64.entropy = &entropy[0]
        a64.logprob = &logprob[0] if has_t else NULL
        a64.rank = &rank[0] if has_t else NULL
        a64.top_logprobs = &top_logprobs[0, 0] if k > 0 else NULL
        a64.top_indices = &top_indices[0, 0] if k > 0 else NULL
        with nogil:
            bad = xent_token_scores_rows_f64(&x[0, 0], n, c, &a64, n_threads)
    return bad
