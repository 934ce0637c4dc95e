# jaxtyping dimension strings ("Lp1 Lp1") are not forward references:
# ruff: noqa: F722
"""The result type of the general-``P`` :math:`1/N` theory, :class:`FiniteWidth`."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .moments import _unique_entries

__all__ = ["FiniteWidth"]


class FiniteWidth(eqx.Module):
    r"""Leading order and :math:`O(1/N)` coefficients of the kernel statistics, ``P`` inputs.

    Covariances and shifts are multiplied by the width ``N``. Layers ``l = 0..L``.
    Covariance tensors are indexed ``[l, a, b, c, d]`` =
    :math:`N\,\mathrm{Cov}(\hat X^{(l)}_{ab}, \hat Y^{(l)}_{cd})` (same layer), and the
    cross-layer tables ``[l, l', a, b, c, d]`` =
    :math:`N\,\mathrm{Cov}(\hat X^{(l)}_{ab}, \hat Y^{(l')}_{cd})`.

    Attributes
    ----------
    K, C:
        ``(L+1, P, P)`` leading-order kernels :math:`K^{(l)}` and :math:`C_\phi(K^{(l)})`.
    out:
        ``(P, P)`` leading-order output kernel.
    C_cov, K_cov:
        ``(L+1, P, P, P, P)`` :math:`N\,\mathrm{Cov}` between the entries of
        :math:`\hat C^{(l)}` and of :math:`\hat K^{(l)}` at every layer.
    CK_cov:
        ``(L+1, P, P, P, P)`` :math:`N\,\mathrm{Cov}(\hat C^{(l)}_{ab}, \hat K^{(l)}_{cd})`.
    out_cov:
        ``(P, P, P, P)`` :math:`N\,\mathrm{Cov}` of the output kernel
        :math:`\sigma^2_{w,out}\hat C^{(L)} + \sigma^2_{b,out}`.
    C_shift, K_shift:
        ``(L+1, P, P)`` :math:`N(\mathbb E\hat C^{(l)} - C^{(l)})`, :math:`N(\mathbb E\hat K^{(l)}
        - K^{(l)})`.
    out_shift:
        ``(P, P)`` :math:`N(\mathbb E\hat K^{out} - K^{out})`.
    C_cov_layers, K_cov_layers, CK_cov_layers:
        ``(L+1, L+1, P, P, P, P)`` the same between any two layers ``l, l'``; only from
        ``method="pairs"`` (``None`` from the walk method).
    residual:
        ``True`` for the ResNet, ``False`` for the feed-forward net.
    method:
        ``"walk"`` or ``"pairs"`` (see :func:`finite_width`).
    """

    K: Float[Array, "Lp1 P P"]
    C: Float[Array, "Lp1 P P"]
    out: Float[Array, "P P"]
    C_cov: Float[Array, "Lp1 P P P P"]
    K_cov: Float[Array, "Lp1 P P P P"]
    CK_cov: Float[Array, "Lp1 P P P P"]
    out_cov: Float[Array, "P P P P"]
    C_shift: Float[Array, "Lp1 P P"]
    K_shift: Float[Array, "Lp1 P P"]
    out_shift: Float[Array, "P P"]
    C_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    K_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    CK_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    residual: bool = eqx.field(static=True)
    method: str = eqx.field(static=True)

    @property
    def entries(self) -> list[tuple[int, int]]:
        """Upper-triangle index pairs ``(a, b)``, ``a <= b``, row-major."""
        return _unique_entries(self.K.shape[-1])

    def mean(self, name: str, width: float) -> Array:
        """NLO mean ``LO + shift / N`` of ``"C"``, ``"K"`` or ``"out"`` (all layers for C, K)."""
        lo = {"C": self.C, "K": self.K, "out": self.out}[name]
        return lo + getattr(self, f"{name}_shift") / width

    def output_cumulant4(self) -> Float[Array, "P P P P"]:
        r"""``N`` times the fourth cumulant of the outputs, :math:`N\kappa_4(y_a, y_b, y_c, y_d)`.

        Given the network the outputs are Gaussian with kernel :math:`\hat K^{out}`, so
        :math:`\kappa_4(y_a,y_b,y_c,y_d) = \mathrm{Cov}(\hat K^{out}_{ab}, \hat K^{out}_{cd})
        + \mathrm{Cov}(\hat K^{out}_{ac}, \hat K^{out}_{bd}) + \mathrm{Cov}(\hat K^{out}_{ad},
        \hat K^{out}_{bc})` exactly; the prior is Gaussian only at :math:`N = \infty`.
        """
        T = self.out_cov
        return T + jnp.transpose(T, (0, 2, 1, 3)) + jnp.transpose(T, (0, 3, 2, 1))

    def output_prior(self, width: float) -> dict[str, Array]:
        r"""Non-Gaussianity of the output prior at width ``N`` (to :math:`O(1/N)`).

        Returns ``excess_kurtosis`` ``(P,)``: :math:`\kappa_4(y_a^4)/(\mathbb E y_a^2)^2 =
        3\,\mathrm{Var}\hat K^{out}_{aa}/(K^{out}_{aa})^2`; ``cov_y2`` ``(P, P)``:
        :math:`\mathrm{Cov}(y_a^2, y_b^2) = 2(\mathbb E y_ay_b)^2 + \kappa_4(y_a,y_a,y_b,y_b)`
        with the NLO mean :math:`\mathbb E y_ay_b = K^{out}_{ab} + \mathrm{shift}_{ab}/N`;
        ``cov_y2_gaussian`` ``(P, P)``: the infinite-width value :math:`2(K^{out}_{ab})^2`.
        """
        k4 = self.output_cumulant4() / width
        P = self.out.shape[0]
        i = jnp.arange(P)
        mean = self.out + self.out_shift / width
        kurt = k4[i, i, i, i] / jnp.diagonal(self.out) ** 2
        k4_aabb = k4[i[:, None], i[:, None], i[None, :], i[None, :]]
        return {"excess_kurtosis": kurt, "cov_y2": 2.0 * mean**2 + k4_aabb,
                "cov_y2_gaussian": 2.0 * self.out**2}

    def cov_matrix(self, name: str, layer: int = -1) -> Array:
        """``(n_e, n_e)`` matrix of :math:`N\\,\\mathrm{Cov}` over :attr:`entries` at one layer.

        ``name`` is ``"C"``, ``"K"`` or ``"out"`` (``layer`` ignored for ``"out"``).
        """
        T = self.out_cov if name == "out" else getattr(self, f"{name}_cov")[layer]
        e = np.asarray(self.entries)
        return T[e[:, 0][:, None], e[:, 1][:, None], e[:, 0][None, :], e[:, 1][None, :]]
