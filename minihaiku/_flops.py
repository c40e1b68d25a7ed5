"""FLOPs of one jaxpr equation, counted the way XLA's ``HloCostAnalysis`` counts them.

XLA's ``compiled.cost_analysis()`` reports ``flops`` and ``transcendentals``
apart: an elementwise op costs one flop per output element, a transcendental
one (``exp``, ``tanh``, ...) one transcendental instead; a dot costs two flops
per multiply-add; a convolution two per multiply-add that touches the input
(kernel taps that land in the padding are not counted); a reduction one
application of its combiner per input element folded in. Data movement
(reshape, broadcast, transpose, slice, gather, pad, ...) is free. The rules
below mirror that on jaxpr primitives, so the totals agree with XLA's on the
same computation up to what XLA's simplifier removes (common subexpressions,
multiplications by one).
"""

import math
from typing import Any

import numpy as np

# Lowered to one HLO transcendental op each.
_TRANSCENDENTAL = frozenset({
    "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan",
    "atan2", "sqrt", "rsqrt", "cbrt", "pow", "erf", "asin", "acos", "atan", "sinh", "cosh",
    "asinh", "acosh", "atanh"})

# One flop per output element.
_ELEMENTWISE = frozenset({
    "add", "add_any", "sub", "mul", "div", "rem", "neg", "max", "min", "abs", "sign", "floor",
    "ceil", "round", "select_n", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor",
    "convert_element_type", "clamp", "nextafter", "is_finite", "square", "shift_left",
    "shift_right_logical", "shift_right_arithmetic", "imag", "real", "conj", "population_count",
    "erf_inv", "reciprocal"})

# Reductions: the combiner's flops per element folded in.
_REDUCE = {"reduce_sum": 1, "reduce_max": 1, "reduce_min": 1, "reduce_prod": 1,
           "reduce_and": 1, "reduce_or": 1, "reduce_xor": 1, "argmax": 2, "argmin": 2,
           "cumsum": 1, "cummax": 1, "cummin": 1, "cumprod": 1, "cumlogsumexp": 1}

# Windowed reductions (pooling).
_REDUCE_WINDOW = frozenset({"reduce_window_sum", "reduce_window_max", "reduce_window_min"})


def count(eqn: Any) -> tuple[int, int]:
    """``(flops, transcendentals)`` of one equation (its own work, not a sub-jaxpr's)."""
    name = eqn.primitive.name
    if name == "dot_general":
        return _dot(eqn), 0
    if name == "conv_general_dilated":
        return _conv(eqn), 0
    out = _size(eqn.outvars[0].aval) if eqn.outvars else 0
    if name in _TRANSCENDENTAL:
        return 0, out
    if name in _ELEMENTWISE:
        return out, 0
    if name == "integer_pow":
        # Lowered to repeated squaring: one multiply per squaring and per set bit.
        y = abs(int(eqn.params["y"]))
        muls = max(y.bit_length() - 1 + bin(y).count("1") - 1, 0)
        return out * (muls + (1 if eqn.params["y"] < 0 else 0)), 0
    if name in _REDUCE:
        folded = _size(eqn.invars[0].aval) - out
        return max(folded, 0) * _REDUCE[name], 0
    if name in _REDUCE_WINDOW:
        window = math.prod(eqn.params["window_dimensions"])
        return (window - 1) * out, 0
    if name == "select_and_scatter_add":
        # XLA rewrites it as an argmax reduce-window (an 11-op comparator per
        # element folded in) and a scatter-add (one add per source element).
        window = math.prod(eqn.params["window_dimensions"])
        return _size(eqn.invars[0].aval) * ((window - 1) * 11 + 1), 0
    if name == "select_and_gather_add":
        window = math.prod(eqn.params["window_dimensions"])
        return out * (window - 1) * 2, 0
    if name in ("scatter_add", "scatter-add", "scatter_mul", "scatter_min", "scatter_max"):
        return _size(eqn.invars[2].aval), 0
    return 0, 0


def _size(aval: Any) -> int:
    shape = getattr(aval, "shape", ())
    return int(np.prod(shape, dtype=np.int64))


def _dot(eqn: Any) -> int:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    contracted = math.prod(lhs[d] for d in lhs_contract)
    return 2 * _size(eqn.outvars[0].aval) * contracted


def _conv(eqn: Any) -> int:
    p = eqn.params
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    batch, in_features = lhs[lhs_spec[0]], lhs[lhs_spec[1]]
    out_features = out[out_spec[1]]
    valid = 1
    for i in range(len(lhs_spec) - 2):
        valid *= _valid_positions(
            lhs[lhs_spec[i + 2]], rhs[rhs_spec[i + 2]], out[out_spec[i + 2]],
            p["window_strides"][i], p["padding"][i], p["lhs_dilation"][i], p["rhs_dilation"][i])
    fmas = (in_features // p["feature_group_count"]) * out_features
    fmas *= (batch // p["batch_group_count"]) * valid
    return 2 * fmas


def _valid_positions(size: int, kernel: int, out: int, stride: int, padding: tuple,
                     base_dilation: int, window_dilation: int) -> int:
    """Kernel taps, over all output positions, that read a real input element."""
    low = padding[0]
    o = np.arange(out)[None, :]
    k = np.arange(kernel)[:, None]
    undilated = o * stride - low + k * window_dilation
    index = undilated // base_dilation
    ok = (undilated == index * base_dilation) & (index >= 0) & (index < size)
    return int(ok.sum())
