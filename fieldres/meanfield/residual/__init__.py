# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Mean-field theory of residual networks at initialisation (Yang & Schoenholz 2017).

Two architectures of width :math:`N` (Yang & Schoenholz, arXiv:1712.08969, Sec. 2), with
independent weights in every layer :math:`l = 1, \dots, L`:

*reduced* residual network (RRN),

.. math::

    x^{(l)} = x^{(l-1)} + W^{(l)} \phi(x^{(l-1)}) + b^{(l)},
    \qquad W_{ij} \sim \mathcal N(0, \sigma_w^2/N),\ b_i \sim \mathcal N(0, \sigma_b^2),

*full* residual network (FRN),

.. math::

    h^{(l)} = W^{(l)} x^{(l-1)} + b^{(l)}, \qquad
    x^{(l)} = x^{(l-1)} + V^{(l)} \phi(h^{(l)}) + a^{(l)},
    \qquad V_{ij} \sim \mathcal N(0, \sigma_v^2/N),\ a_i \sim \mathcal N(0, \sigma_a^2).

(The RRN is the ResNet of ``THEORY.md`` Sec. 1 at :math:`\rho = 1`.) For :math:`N\to\infty`
the neurons are Gaussian; with :math:`p^{(l)} = \mathbb E[(x^{(l)}_i)^2]`,
:math:`\gamma^{(l)} = \mathbb E[x^{(l)}_i x'^{(l)}_i]` for two inputs, and for the FRN
:math:`q^{(l)} = \mathbb E[(h^{(l)}_i)^2] = \sigma_w^2 p^{(l-1)} + \sigma_b^2`,
:math:`\lambda^{(l)} = \sigma_w^2 \gamma^{(l-1)} + \sigma_b^2`,

.. math::

    \text{FRN:}\quad p^{(l)} = p^{(l-1)} + \sigma_v^2\, \mathcal V\phi(q^{(l)}) + \sigma_a^2, \qquad
    \gamma^{(l)} = \gamma^{(l-1)} + \sigma_v^2\, \mathcal W\phi(q^{(l)}, \lambda^{(l)}) + \sigma_a^2,

    \text{RRN:}\quad p^{(l)} = p^{(l-1)} + \sigma_w^2\, \mathcal V\phi(p^{(l-1)}) + \sigma_b^2, \qquad
    \gamma^{(l)} = \gamma^{(l-1)} + \sigma_w^2\, \mathcal W\phi(p^{(l-1)}, \gamma^{(l-1)}) + \sigma_b^2,

with :math:`\mathcal V\phi(q) = \mathbb E[\phi(\sqrt q z)^2]` and :math:`\mathcal W\phi` the
covariance of :math:`\phi` for the bivariate Gaussian (the C-map of
:mod:`fieldres.kernels.activations`; for unequal lengths the full :math:`2\times 2` kernel is
propagated). The correlation is :math:`e^{(l)} = \gamma^{(l)}/\sqrt{p^{(l)}p'^{(l)}}` and the
squared distance :math:`s^{(l)} = p^{(l)} + p'^{(l)} - 2\gamma^{(l)}`. Back-propagated
gradients (with the gradient-independence assumption, Yang & Schoenholz's Axiom 3.2)
grow by

.. math::

    \frac{\chi^{(l-1)}}{\chi^{(l)}} = 1 + \sigma_v^2\sigma_w^2\, \mathcal V\phi'(q^{(l)}) \;\;\text{(FRN)},
    \qquad 1 + \sigma_w^2\, \mathcal V\phi'(p^{(l-1)}) \;\;\text{(RRN)},

so :math:`\chi^{(0)}/\chi^{(l)}` is the product of these factors over the first :math:`l`
layers (the same factor multiplies :math:`\mathbb E\|J u\|^2` of a forward tangent, which
is how :func:`simulate_resnet` measures it).

Large-depth laws (derived in ``docs/resnet_meanfield.md``; :func:`asymptotic_laws`), with
:math:`(a, \beta) = (\sigma_v^2, \sigma_a^2)`, :math:`\omega = \sigma_w^2` for the FRN and
:math:`(a, \beta) = (\sigma_w^2, \sigma_b^2)`, :math:`\omega = 1` for the RRN:

* tanh (any odd activation saturating at :math:`\pm 1`): :math:`p \simeq (a + \beta) l`;
  :math:`\log \chi^{(0)}/\chi^{(l)} \simeq A\sqrt l`, :math:`A = 2 a\sqrt\omega I_2/\sqrt{2\pi(a+\beta)}`,
  :math:`I_2 = \int \phi'^2` (a stretched exponential); :math:`e \to e^*` with
  :math:`(a+\beta)e^* = a\,\tfrac2\pi\arcsin e^* + \beta` as :math:`l^{-\delta}`,
  :math:`\delta = 1 - \tfrac{a}{a+\beta}\tfrac{2}{\pi\sqrt{1-e^{*2}}}`; :math:`s \simeq 2(a+\beta)(1-e^*) l`.
* ReLU: :math:`p, \chi^{(0)}/\chi^{(l)} \propto (1 + a\omega/2)^l`;
  :math:`1 - e \simeq 4/(k l)^2`, :math:`k = \tfrac{r}{1+r}\tfrac{2\sqrt2}{3\pi}`, :math:`r = a\omega/2`;
  :math:`s \propto (1 + a\omega/2)^l\, l^{-2}`.
* :math:`\alpha`-ReLU, :math:`\phi = \max(x, 0)^\alpha`, :math:`\tfrac12 < \alpha < 1`:
  :math:`p \simeq [(1-\alpha) a c_\alpha \omega^\alpha l]^{1/(1-\alpha)}`;
  :math:`\chi^{(0)}/\chi^{(l)} = \Theta(l^{\alpha^2/((1-\alpha)(2\alpha-1))})`; :math:`e \to e^*`,
  the fixed point of the normalised kernel :math:`J_\alpha(e^*) = e^*`, as :math:`l^{-\delta}`,
  :math:`\delta = (1 - J_\alpha'(e^*))/(1-\alpha)`; :math:`s \simeq 2(1-e^*)p`.

References:
    G. Yang, S. S. Schoenholz, *Mean Field Residual Networks: On the Edge of Chaos*,
    NeurIPS 2017, arXiv:1712.08969 (Secs. 3-5, Fig. 3).
"""

from .initialisation import initialisation_for_level as initialisation_for_level
from .initialisation import xavier_he_comparison as xavier_he_comparison
from .laws import Fit as Fit
from .laws import Law as Law
from .laws import asymptotic_laws as asymptotic_laws
from .laws import fit_law as fit_law
from .laws import fit_laws as fit_laws
from .laws import plot_laws as plot_laws
from .recursion import KINDS as KINDS
from .recursion import AlphaReLU as AlphaReLU
from .recursion import ResHyper as ResHyper
from .recursion import ResMeanField as ResMeanField
from .recursion import resnet_meanfield as resnet_meanfield
from .recursion import resolve_activation as resolve_activation
from .simulation import ResSimulation as ResSimulation
from .simulation import simulate_resnet as simulate_resnet

__all__ = [
    "AlphaReLU",
    "ResHyper",
    "ResMeanField",
    "Law",
    "Fit",
    "ResSimulation",
    "resolve_activation",
    "resnet_meanfield",
    "asymptotic_laws",
    "fit_law",
    "fit_laws",
    "simulate_resnet",
    "initialisation_for_level",
    "xavier_he_comparison",
    "plot_laws",
    "KINDS",
]
