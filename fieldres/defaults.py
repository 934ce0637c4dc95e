"""The one place for fieldres's default hyperparameters and run-size presets.

The CLI, the experiments and the API all read their defaults from here:

- :class:`Hyper`: the weight and bias variances (the paper's Fig. 4 values by default);
- :data:`DEFAULT_K0`: the input kernel of the paper's Fig. 4;
- :data:`PRESETS`: the names of the run sizes every command and experiment with sizes
  offers (``smoke``: seconds, used by the tests; ``default``; ``paper``: the published
  figures), and :func:`check_preset`, which also names the new preset for an old name.
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import ArrayLike

from ._validation import FieldresInputError, check_nonnegative

__all__ = ["Hyper", "DEFAULT_K0", "PRESETS", "check_preset"]


class Hyper(eqx.Module):
    """Weight and bias variances of the network (THEORY Sec. 1); all differentiable leaves.

    Defaults are those of the paper's Fig. 4: ``sigma_w2 = sigma_w2_out = 1.25``,
    ``sigma_b2 = sigma_b2_out = 0.05``; the input layer defaults to ``sigma_w2_in = 1``,
    ``sigma_b2_in = 0`` (so that ``K^(0) = X X^T / d_in``).
    """

    sigma_w2: ArrayLike = 1.25
    sigma_b2: ArrayLike = 0.05
    sigma_w2_out: ArrayLike = 1.25
    sigma_b2_out: ArrayLike = 0.05
    sigma_w2_in: ArrayLike = 1.0
    sigma_b2_in: ArrayLike = 0.0

    def __check_init__(self):
        for name in ("sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out", "sigma_w2_in",
                     "sigma_b2_in"):
            check_nonnegative(name, getattr(self, name))



#: The input kernel K^(0) of the paper's Fig. 4 (two inputs, correlation 0.6).
DEFAULT_K0: tuple[tuple[float, float], tuple[float, float]] = ((0.05, 0.03), (0.03, 0.05))

#: Run sizes offered by every command and experiment that has sizes.
PRESETS: tuple[str, ...] = ("smoke", "default", "paper")

# names used before the presets were unified, and what they became
_RENAMED = {"quick": "smoke", "small": "default"}


def check_preset(name: str) -> str:
    """Return ``name`` if it is one of :data:`PRESETS`; otherwise raise ``ValueError``.

    Old names (``quick``, ``small``) are refused with a message naming their new name.
    """
    if name in PRESETS:
        return name
    if name in _RENAMED:
        raise FieldresInputError(f"preset {name!r} was renamed: use --preset {_RENAMED[name]} "
                         f"(presets are {', '.join(PRESETS)})")
    raise FieldresInputError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
