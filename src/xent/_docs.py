"""Docstring text shared by the public functions, written once.

A docstring line that holds only ``{name}`` is replaced, when the module is imported,
by the entry ``PIECES[name]``, indented like the placeholder (as SciPy's ``doccer``
and scikit-learn's shared parameter descriptions do).  Only whole-line placeholders
are filled, so braces elsewhere (``{"mean", "sum"}``) are left alone.
"""

from __future__ import annotations

import re
from typing import Callable

_PLACEHOLDER = re.compile(r"^([ \t]*)\{(\w+)\}[ \t]*$", flags=re.M)

_NUM_THREADS = """\
num_threads : int, optional
    OpenMP threads; ``None`` uses ``xent.get_num_threads()``."""

PIECES = {
    "num_threads": _NUM_THREADS,
    # The first two parameters of the functions of (..., C) logits and class targets.
    "logits_rows": """\
logits : array_like of shape (..., C)
    Unnormalised scores, classes on the last axis.  float32 and float64 are
    computed natively.  float16 and ``ml_dtypes.bfloat16`` are read as they are by
    the ``cross_entropy`` functions (math in float32; the gradient and
    ``"none"`` losses in the input dtype, within 1 ulp; ``"mean"``/``"sum"`` a
    float32 scalar); the other losses compute them in float32 and round their
    gradient and ``"none"`` losses once to the input dtype.""",
    "class_target": """\
target : array_like of int, shape ``logits.shape[:-1]``
    Class indices in ``[0, C)`` or `ignore_index` (any integer dtype; floating
    targets raise TypeError).""",
    # The gradient buffer of every *_grad / *_and_grad function.
    "out_grad": """\
out : ndarray, optional
    Buffer for the gradient: a C-contiguous, writable array of the first argument's
    shape and dtype (16-bit logits: a 16-bit `out`).  Passing the first argument itself (e.g.
    ``out=logits``) writes the gradient in place.""",
    # grad_output of the row losses (one loss per row of (..., C) logits).
    "grad_output_rows": """\
grad_output : float or array_like, optional
    Multiplies the gradient: a scalar, or for ``reduction="none"`` also an array of
    one value per row (the first argument's ``shape[:-1]``).""",
    # grad_output of the elementwise (binary) losses.
    "grad_output_elementwise": """\
grad_output : float or array_like, optional
    Multiplies the gradient: a scalar, or for ``reduction="none"`` also an array of
    the input's shape.""",
    # Returns section of every *_and_grad function.
    "returns_loss_and_grad": """\
Returns
-------
loss : numpy scalar or ndarray
    As the loss function returns it.
grad : ndarray
    As its ``_grad`` function returns it for ``grad_output=1``; `out` if given.""",
    # Parameters to Raises of softmax and log_softmax.
    "softmax_sections": """\
Parameters
----------
x : array_like
    Real floating-point input.  float16 and ``ml_dtypes.bfloat16`` are read as
    they are (math in float32, the result in the input dtype, within 1 ulp).
axis : int, optional
    Axis to normalise (default last, the fast path).
out : ndarray, optional
    C-contiguous, writable array of ``x``'s shape and dtype. ``out=x``
    computes in place.
""" + _NUM_THREADS + """

Returns
-------
ndarray
    Same shape as `x`; `out` if given.

Raises
------
TypeError
    If `x` is not of a real floating dtype.
ValueError
    If `out` is not acceptable.
numpy.exceptions.AxisError
    If `axis` is out of range.""",
}


def fill_doc(*functions: Callable, **extra: str) -> None:
    """Replace the ``{name}`` lines of each function's docstring by ``PIECES[name]``
    (or ``extra[name]``, for pieces that one module shares among its functions)."""
    pieces = {**PIECES, **extra}

    def piece(match: re.Match) -> str:
        indent, name = match.groups()
        return "\n".join(indent + line if line else line
                         for line in pieces[name].splitlines())

    for f in functions:
        if f.__doc__:  # None under python -OO
            f.__doc__ = _PLACEHOLDER.sub(piece, f.__doc__)
