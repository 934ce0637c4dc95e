"""Singular-value spectra of the input--output Jacobian: dynamical isometry of deep ResNets.

For a residual network the input--output Jacobian is a product of ``L`` factors
``1 + A_l``, one per residual block, where ``A_l`` is a random matrix whose law is invariant
under multiplication by orthogonal matrices on both sides (an *R-diagonal* element in free
probability) with

.. math::

    \\varepsilon_l = \\tfrac1N \\operatorname{tr} A_l A_l^T
        = s^2\\, \\mathbb{E}_{h \\sim \\mathcal N(0, K^{(l-1)})}[\\phi'(h)^2],

``s^2`` the variance of the branch's weights. When every ``epsilon_l = O(1/L)``, the
S-transform of ``J J^T`` tends, for ``N -> inf`` and then ``L -> inf``, to

.. math::

    S(z) = e^{-c\\,(2z + 1)}, \\qquad c = \\sum_{l=1}^{L} \\varepsilon_l ,

a universal law that depends on the activation only through one number, the *effective
cumulant* ``c`` (Tarnowski, Warcho\\l, Jastrz\\k{e}bski, Tabor, Nowak, arXiv:1809.08848,
Sec. II.1). With ``u = z G(z) - 1`` (``G`` the Green's function of ``J J^T``) the
Green's-function equation reads

.. math::

    z = \\frac{1 + u}{u}\\, e^{c(2u + 1)} .

This module solves it in closed parametric form: for ``z = lambda`` on the support, ``u``
runs along the curve ``arg u - arg(1 + u) = 2c Im u`` (an inscribed-angle condition), which
is parametrised by ``s = 2 Re u + 1`` in ``[-sqrt(1 + 2/c), sqrt(1 + 2/c)]``; the density is
``rho(lambda) = Im u / (pi lambda)`` and its distribution function has the closed form
``F = 1 - [arg u - 2c Im u (1 + Re u)] / pi`` (an exact antiderivative of ``G``). The support
edges and the condition number ``kappa = sqrt(lambda_+ / lambda_-)`` are explicit; the
moments follow from Lagrange inversion.

Two residual parametrisations are covered:

``architecture="fieldres"`` (THEORY Sec. 1, pre-activation residual blocks)
    ``h^(l) = h^(l-1) + rho (W^(l) phi(h^(l-1)) + b^(l))``, ``W ~ N(0, sigma_w^2 / N)``;
    ``J = dh^(L)/dh^(0) = prod_l (1 + rho W^(l) D^(l))``, ``D^(l) = diag phi'(h^(l-1))``,
    ``s^2 = rho^2 sigma_w^2`` and ``K^(l)`` from the NNGP recursion of
    :mod:`fieldres.kernels`.
``architecture="tarnowski"`` (the paper's Eq. 1 with ``a = 1``)
    ``x_l = x_{l-1} + phi(h_l)``, ``h_l = rho W_l x_{l-1} + b_l``; the paper's weight
    variance ``sigma^2 / (N L)`` is ``rho^2 sigma_w^2 / N``, i.e.
    ``sigma^2_Tarnowski = L rho^2 sigma_w^2`` (:func:`tarnowski_sigma2`). The Jacobian
    ``dx_L/dx_0 = prod_l (1 + D_l rho W_l)`` has the same structure, but the variance of
    ``h_l`` follows the paper's Eq. (35), in which a non-zero mean ``E phi`` (sigmoid, SELU,
    ReLU) accumulates along the skip path.

For odd activations without biases both give the same ``c``. The feed-forward net
(``h^(l) = W^(l) phi(h^(l-1)) + b^(l)``, ``J = prod_l W^(l) D^(l)``) is the contrast of
Pennington, Schoenholz, Ganguli (arXiv:1711.04735): there the relative variance of the
spectrum grows linearly with ``L`` unless the weights are orthogonal and ``phi'`` is nearly
constant (:func:`ffnet_spectrum_moments`).

References:
    Tarnowski, Warcho\\l, Jastrz\\k{e}bski, Tabor, Nowak, *Dynamical isometry is achieved in
    residual networks in a universal way for any activation function*, AISTATS 2019,
    arXiv:1809.08848.
    Pennington, Schoenholz, Ganguli, *Resurrecting the sigmoid in deep learning through
    dynamical isometry: theory and practice*, NeurIPS 2017, arXiv:1711.04735.
"""

from .activations import SPECTRAL_ACTIVATIONS as SPECTRAL_ACTIVATIONS
from .activations import SpectralActivation as SpectralActivation
from .activations import gaussian_expectation as gaussian_expectation
from .activations import spectral_activation as spectral_activation
from .empirical import jacobian_spectrum as jacobian_spectrum
from .empirical import ks_distance as ks_distance
from .empirical import ks_threshold as ks_threshold
from .empirical import plot_spectrum as plot_spectrum
from .theory import EffectiveCumulant as EffectiveCumulant
from .theory import FFMoments as FFMoments
from .theory import condition_number as condition_number
from .theory import effective_cumulant as effective_cumulant
from .theory import equalising_rho as equalising_rho
from .theory import ffnet_critical_point as ffnet_critical_point
from .theory import ffnet_spectrum_moments as ffnet_spectrum_moments
from .theory import rho_from_tarnowski as rho_from_tarnowski
from .theory import spectral_curve as spectral_curve
from .theory import spectrum_edges as spectrum_edges
from .theory import tarnowski_sigma2 as tarnowski_sigma2
from .theory import universal_cdf as universal_cdf
from .theory import universal_density as universal_density
from .theory import universal_moments as universal_moments

__all__ = [
    "SpectralActivation",
    "spectral_activation",
    "SPECTRAL_ACTIVATIONS",
    "gaussian_expectation",
    "EffectiveCumulant",
    "effective_cumulant",
    "tarnowski_sigma2",
    "rho_from_tarnowski",
    "spectrum_edges",
    "condition_number",
    "universal_moments",
    "spectral_curve",
    "universal_density",
    "universal_cdf",
    "jacobian_spectrum",
    "ks_distance",
    "ks_threshold",
    "equalising_rho",
    "FFMoments",
    "ffnet_spectrum_moments",
    "ffnet_critical_point",
    "plot_spectrum",
]
