"""The one result code of every fieldres solver, and its readable messages.

Every solver that can fail without raising (the ``rho*`` search, its continuum limit, the
feed-forward mean-field fixed points and the critical line) returns an integer array of
:class:`Status` codes alongside its values; :func:`message` turns a code into one line of
text. Values that do not exist for a given status are ``nan`` (or ``inf`` where the quantity
diverges), never a bracket end or a number the solver did not find.

The integer codes are part of the JSON outputs and saved experiment results: they never
change meaning (new members get new codes).

=====  ===================  ======================================================
code   member               meaning
=====  ===================  ======================================================
0      ``OK``               found / converged
1      ``INCREASING``       no interior maximum: the objective rises to the range end
2      ``DECREASING``       no interior maximum: the objective falls from the start
3      ``SOLVER_FAILED``    the root finder did not converge
4      ``NO_FIXED_POINT``   no stable finite fixed point: ``q^(l)`` diverges
5      ``NO_CROSSING``      the critical condition has no sign change in the bracket
6      ``CRITICAL``         found, exactly critical (``chi = 1``): a depth scale diverges
=====  ===================  ======================================================

``OK`` and ``CRITICAL`` are successes (every value is computed; at criticality a depth
scale is infinite): :func:`is_success`.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Status", "message", "messages", "is_success"]


class Status(enum.IntEnum):
    """Outcome of a fieldres solver (see the module docstring for the table)."""

    OK = 0
    INCREASING = 1
    DECREASING = 2
    SOLVER_FAILED = 3
    NO_FIXED_POINT = 4
    NO_CROSSING = 5
    CRITICAL = 6


_MESSAGES = {
    Status.OK: "converged",
    Status.INCREASING: (
        "no interior maximum: chi^out increases monotonically up to the largest rho searched "
        "({hi:g}); for a positively homogeneous activation such as ReLU it never turns over"
    ),
    Status.DECREASING: (
        "no interior maximum: chi^out decreases monotonically from the smallest rho searched "
        "({lo:g}); the input kernel already lies beyond the optimal kernel K*, so rho* -> 0"
    ),
    Status.SOLVER_FAILED: "the root finder did not converge",
    Status.NO_FIXED_POINT: (
        "the length map has no stable finite fixed point: q^(l) diverges with depth "
        "(for ReLU this happens for sigma_w^2 >= 2)"
    ),
    Status.NO_CROSSING: "chi_1 - 1 does not change sign inside the sigma_w^2 bracket",
    Status.CRITICAL: (
        "critical (chi_1 = 1): the correlation depth scale xi_c diverges (ReLU with "
        "sigma_b^2 > 0: q* too, q^(l) grows linearly)"
    ),
}

# Solver-specific wording of a status (the code and its meaning are the same).
_BY_SOLVER = {
    ("rho_star", Status.OK): "interior maximum found",
    ("rho_star", Status.SOLVER_FAILED): "the root finder did not converge inside the bracket",
}

_DEFAULT_FIELDS = {"lo": float("nan"), "hi": float("nan")}


def message(status: int, solver: str | None = None, **context) -> str:
    """One line of text for a :class:`Status` code.

    Parameters
    ----------
    status:
        A :class:`Status` member or its integer code.
    solver:
        ``"rho_star"`` for the wording of the ``rho*`` search; ``None`` (default) for the
        generic text.
    **context:
        Values the text names: ``lo``, ``hi`` (the searched ``rho`` range).

    Raises
    ------
    ValueError
        For an integer that is not a :class:`Status` code.
    """
    st = Status(int(status))
    text = _BY_SOLVER.get((solver, st), _MESSAGES[st])
    return text.format(**{**_DEFAULT_FIELDS, **context})


def messages(status, solver: str | None = None, **context) -> np.ndarray:
    """:func:`message` for every entry of an array of codes (an object array of strings)."""
    return np.vectorize(lambda s: message(s, solver, **context), otypes=[object])(
        np.asarray(status))


def is_success(status):
    """``True`` where the solver found its values (``OK`` or ``CRITICAL``); elementwise.

    Works on integers, NumPy and JAX arrays (also under ``jit``).
    """
    st = np.asarray(status) if isinstance(status, list | tuple) else status
    return (st == Status.OK) | (st == Status.CRITICAL)
