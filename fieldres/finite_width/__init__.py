r"""Finite width: the :math:`1/N` (next-to-leading-order) theory of the kernel statistics.

At finite width ``N`` the empirical kernels of a ResNet (THEORY §1, §4)

.. math::

    \hat C^{(l)} = \frac1N \sum_i \phi(h^{(l)}_i)^2, \qquad
    \hat K^{(l)} = \frac1N \sum_i (h^{(l)}_i)^2

fluctuate from network to network. This module computes, for a **single input** (``P = 1``),
the two :math:`O(1/N)` quantities that describe them (Fischer, Dahmen, Helias,
*Field theory for optimal signal propagation in ResNets*, arXiv:2305.07715, Sec. 3 and
App.; ``THEORY.md`` §4, reference numbers §5):

* the covariance :math:`N\,\mathrm{Cov}(\hat C^{(k)}, \hat C^{(k')})` for all layers, the
  variance :math:`N\,\mathrm{Var}\,\hat K^{(l)}` and that of the output kernel
  :math:`\sigma^2_{w,\mathrm{out}} \hat C^{(L)} + \sigma^2_{b,\mathrm{out}}`;
* the mean shift :math:`\Delta^{(l)} = N(\mathbb E\hat C^{(l)} - C_\phi(K^{(l)}))` and
  :math:`N(\mathbb E\hat K^{(l)} - K^{(l)})`.

Notation: :math:`a = \rho^2\sigma_w^2`, :math:`b = \rho^2\sigma_b^2`, leading-order kernel
:math:`K^{(l+1)} = K^{(l)} + a C(K^{(l)}) + b`, :math:`C(K) = \mathbb E_{h\sim\mathcal N(0,K)}
\phi(h)^2`, :math:`G^{(k)} = C'(K^{(k)})`. At leading order one neuron's trajectory
:math:`(h^{(0)},\dots,h^{(L)})` is a Gaussian random walk, :math:`\mathbb E[h^{(j)} h^{(k)}] =
K^{(\min(j,k))}`.

**Kernel covariance (linear response).** With the intrinsic cross-layer covariances
:math:`\Xi^{(j,k)} = \mathrm{Cov}[\phi^2(h^{(j)}), \phi^2(h^{(k)})]` and the block lower
triangular coupling :math:`\mathcal G^{(k,j)} = a G^{(k)}` (:math:`j < k`),

.. math::

    \delta\hat C = \varepsilon + \mathcal G\,\delta\hat C, \qquad
    R = (1 - \mathcal G)^{-1}, \qquad N\,\mathrm{Cov}(\hat C, \hat C) = R\,\Xi\,R^T .

For the pre-activation kernel the observable at layer ``l`` is :math:`h^2` whose mean
responds to the accumulated kernel with slope one:
:math:`\delta\hat K^{(l)} = \varepsilon_K^{(l)} + a\sum_{m<l}\delta\hat C^{(m)}`, hence

.. math::

    N\,\mathrm{Var}\,\hat K^{(l)} = r^{(l)T}\Xi\,r^{(l)} + 2\, r^{(l)T} c + 2 (K^{(l)})^2,
    \qquad r^{(l)}_j = a \sum_{j\le m<l} R^{(m,j)},
    \qquad c_j = \mathrm{Cov}[\phi^2(h^{(j)}), (h^{(j)})^2],

using :math:`\mathrm{Cov}[\phi^2(h^{(j)}), (h^{(l)})^2] = \mathrm{Cov}[\phi^2(h^{(j)}),
(h^{(j)})^2]` for :math:`j \le l` (the later increments are independent and centred) and
:math:`\mathrm{Var}[(h^{(l)})^2] = 2 (K^{(l)})^2`. Equivalently (exact martingale
decomposition, the check used in the tests): :math:`\hat K^{(l)} = \hat K^{(0)} + \sum_{m<l}
(a\hat C^{(m)} + b) + \sum_{m<l} M_m` where the martingale increments :math:`M_m` (cross term
and the centred square of the Gaussian increment) have conditional variance
:math:`(4\rho^2 K^{(m)} s_m + 2\rho^4 s_m^2)/N`, :math:`s_m = \sigma_w^2 C(K^{(m)}) + \sigma_b^2`,
and are correlated with the *later* :math:`\hat C` (the same neurons carry the noise).

**Mean shift.** Expanding the exact conditional recursion
:math:`\mathbb E[\langle F\rangle_{m+1}\,|\,\text{layer } m] = \langle T_{S^{(m)}} F\rangle_m`
(:math:`T_S`: Gaussian smoothing with variance :math:`S^{(m)} = a\hat C^{(m)} + b`) to second
order in :math:`\delta\hat C^{(m)}` at every layer, with the heat equation
:math:`\partial_S T_S F = \tfrac12 T_S F''`, gives :math:`\Delta = R\,s` with the source

.. math::

    s^{(l)} = \tfrac12 a^2 C''(K^{(l)})\, N\,\mathrm{Var}\Bigl(\sum_{m<l}\hat C^{(m)}\Bigr)
      + a \sum_{m<l} \sum_{j \le m} R^{(m,j)}\,
        \tfrac12\mathrm{Cov}[\phi^2(h^{(j)}), (\phi^2)''(h^{(l)})],

which is THEORY §4's recursion with the diagonal and the :math:`a C''\sum_{j<m}
N\mathrm{Cov}(\hat C^{(m)}, \hat C^{(j)})` terms combined into the variance of the
accumulated kernel. Exactly, :math:`\mathbb E\hat K^{(l)} = K^{(0)} + \sum_{m<l}(a\,
\mathbb E\hat C^{(m)} + b)`, so :math:`N(\mathbb E\hat K^{(l)} - K^{(l)}) = a\sum_{m<l}
\Delta^{(m)}`. All results are :math:`O(1)` coefficients of :math:`1/N`; the corrections to
them are :math:`O(1/N)`.

**Gaussian integrals.** Every cross-layer moment is a 2-D integral
:math:`\mathrm{Cov}[f(x), g(x + \sqrt{D} v)]`, :math:`x\sim\mathcal N(0, K^{(j)})`,
:math:`D = K^{(k)} - K^{(j)} \ge 0`, computed with a tensor-product probabilists'
Gauss–Hermite rule in the independent variables :math:`(x/\sqrt{K^{(j)}}, v)` (stable: no
Cholesky factor of a nearly singular matrix) and with the means subtracted before the
product. For smooth activations (erf, tanh) the default ``degree = 128`` gives ~1e-12
(tested against ``degree = 256``). The activation enters only through ``activation.fn``
(derivatives by :func:`jax.grad`) and ``activation.variance`` (:math:`C, C', C''`); these
rules assume a smooth :math:`\phi`. ReLU and leaky ReLU (:math:`\phi'' = (1-s)\delta`) have
their own integrals (``_piecewise.py``): arc-cosine closed forms (Cho & Saul's :math:`J_2`)
for one input, and for several inputs closed-form inner averages with their Dirac terms
and an outer polar rule whose panels end on the kinks (the pairs method).

**Several inputs, feed-forward nets, outputs, response.** :func:`finite_width` is the
general-``P`` theory (every entry for ``P <= 4``, or up to four selected inputs of a larger
kernel), for the ResNet and the feed-forward net; for ``P = 1`` it reproduces
:func:`finite_width_single`. Its default *walk* method (``P <= 2``) needs no layer-pair
integrals: the cross-layer moments are accumulated in one forward pass along one neuron's
random walk, a density-weighted conditional mean convolved from layer to layer on a grid
(FFT), ``O(L)``; the *pairs* method (any ``P``) integrates every pair of layers, ``O(L^2)``,
and also returns covariances between different layers. The conditional
Gaussianity of the outputs turns the output-kernel covariance into the output prior's
fourth cumulant (:meth:`FiniteWidth.output_prior`). :func:`chi_out_nlo` differentiates the
NLO mean output kernel with respect to :math:`K^{(0)}` and :func:`rho_star_width` gives
:math:`\rho^*(N)` (:func:`rho_star_width_entries`: for every entry and pair of ``K0``).
:func:`simulate_nlo` measures the same statistics in finite networks.
The derivation for general ``P`` is in ``docs/finite_width.md``.
"""

from .api import finite_width as finite_width
from .moments import bvn_excess as bvn_excess
from .nlo import WidthOptimum as WidthOptimum
from .nlo import chi_out_nlo as chi_out_nlo
from .nlo import rho_star_width as rho_star_width
from .nlo_entries import WidthOptima as WidthOptima
from .nlo_entries import rho_star_width_entries as rho_star_width_entries
from .result import FiniteWidth as FiniteWidth
from .single import SingleInputNLO as SingleInputNLO
from .single import finite_width_single as finite_width_single
from .single import gauss_cov_pair as gauss_cov_pair

__all__ = [
    "FiniteWidth",
    "SingleInputNLO",
    "WidthOptimum",
    "WidthOptima",
    "SimulatedNLO",
    "bvn_excess",
    "chi_out_nlo",
    "rho_star_width",
    "rho_star_width_entries",
    "simulate_nlo",
    "finite_width",
    "finite_width_single",
    "gauss_cov_pair",
]


def __getattr__(name: str):
    # The Monte-Carlo counterpart lives in fieldres.simulation (which imports this package):
    # re-exported lazily so that either package can be imported first.
    if name in ("SimulatedNLO", "simulate_nlo"):
        from ..simulation import nlo

        return getattr(nlo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
