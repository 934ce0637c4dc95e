r"""Monte-Carlo simulation of finite-width residual networks: the one engine every check uses.

This package samples the *empirical* kernels of real, finite networks so that the field theory
(leading-order NNGP kernel and its :math:`1/N` corrections) can be validated against them.
The network is the one of THEORY §1 (Fischer, Dahmen & Helias, *Field theory for optimal
signal propagation in ResNets*, arXiv:2305.07715):

.. math::

    h^{(0)} = W_\mathrm{in} x + b_\mathrm{in},\qquad
    h^{(l)} = h^{(l-1)} + \rho\,\bigl(W^{(l)}\phi(h^{(l-1)}) + b^{(l)}\bigr),\qquad
    y = W_\mathrm{out}\,\phi(h^{(L)}) + b_\mathrm{out},

with :math:`W^{(l)}_{ij}\sim\mathcal N(0,\sigma_w^2/N)` and :math:`b^{(l)}_i\sim\mathcal
N(0,\sigma_b^2)` (the feed-forward variant drops the skip connection and the factor
:math:`\rho`). For every network we record, at each layer :math:`l=0,\dots,L`, the
:math:`P\times P` empirical kernels

.. math::

    \hat C^{(l)} = \tfrac1N\,\phi(h^{(l)})^\top\phi(h^{(l)}),\qquad
    \hat K^{(l)} = \tfrac1N\,h^{(l)\top}h^{(l)},

where :math:`h^{(l)}` is the :math:`N\times P` matrix of pre-activations (neurons by inputs),
and the output kernel :math:`\sigma_{w,\mathrm{out}}^2\hat C^{(L)}+\sigma_{b,\mathrm{out}}^2`
(the covariance of the outputs conditioned on the last hidden layer).

Two exact samplers are provided; they agree in distribution (THEORY §6):

``method="sampler"`` -- :math:`O(NP^2)` per layer.
    Conditioned on layer :math:`l-1`, the rows of :math:`W^{(l)}\phi(h^{(l-1)})+b^{(l)}` are
    i.i.d. Gaussian over the :math:`P` inputs with covariance
    :math:`\sigma_w^2\hat C^{(l-1)}+\sigma_b^2\,\mathbf 1\mathbf 1^\top = M^\top M`,
    :math:`M=[\sigma_w\phi(h)/\sqrt N;\ \sigma_b\mathbf 1^\top]` (an :math:`(N+1)\times P`
    matrix). With :math:`R` the triangular factor of a Householder QR decomposition of
    :math:`M` (so :math:`R^\top R=M^\top M`, exact also when :math:`M` is rank deficient) the
    increment is :math:`\rho\,ZR` with :math:`Z\sim\mathcal N(0,1)^{N\times P}`. No
    :math:`N\times N` matrix is ever formed.
``method="full"`` -- :math:`O(N^2P)` per layer.
    The weights and biases are drawn explicitly, exactly as in a real network:
    :math:`[W^{(l)}\ b^{(l)}]` is an :math:`N\times(N+1)` Gaussian matrix and the increment is
    :math:`\rho\,[W^{(l)}\ b^{(l)}]\,[\phi(h);\mathbf 1^\top]`. This is the reference the
    sampler is tested against.

The input layer is built either from data ``X`` (shape ``(P, d_in)``; the full method draws
:math:`W_\mathrm{in}` and :math:`b_\mathrm{in}`, the sampler uses the QR trick on
:math:`[\sigma_{w,\mathrm{in}}X^\top/\sqrt{d_\mathrm{in}};\ \sigma_{b,\mathrm{in}}\mathbf 1^\top]`)
or directly from an input kernel ``K0``: the rows of :math:`h^{(0)}` are i.i.d.
:math:`\mathcal N(0, K^{(0)})` (both methods; Cholesky factor when ``K0`` is positive
definite, symmetric eigen square root when it is only semi-definite). The read-out of
:func:`simulate_outputs` is one more such layer with fresh weights.

Networks are vmapped in batches, the layer loop is a :func:`jax.lax.scan`, and each batch is a
single jit-compiled call (one compilation per static configuration; :math:`\rho` and the
variances are traced array arguments, so sweeping them does not recompile). Per-layer means
and variances are merged across batches in float64 (Chan's parallel update) so that only
summaries, not all layers of all networks, are kept. Network ``i`` uses the key
``fold_in(key, i)``, so results do not depend on ``batch_size``.

Everything is differentiable with respect to ``K0``, ``X`` and ``rho`` at a fixed key
(pathwise derivative): :func:`simulate_response` returns the Monte-Carlo estimate of the
response :math:`\partial\,\mathbb E[\hat K^\mathrm{out}]/\partial K^{(0)}` in a given direction
(THEORY §3). For this the factors are the unique ones with a non-negative diagonal (a
transposed Cholesky factor), which depend smoothly on the parameters, so that a network's
random numbers map to a smooth sample path. The derivative with respect to ``K0`` needs a
positive-definite ``K0``.

Layout: :mod:`~fieldres.simulation.sampler` holds the sampling primitives (square-root
factors, the exact kernel sampler, explicit weights with a given variance and
initialisation, a layer scan with per-layer keys, Jacobian accumulation), which
:mod:`fieldres.meanfield.residual` and :mod:`fieldres.meanfield.spectra` build their networks
from; :mod:`~fieldres.simulation.stats` the result types and the statistics over networks
(per-network keys, batches, masked moments merged across batches);
:mod:`~fieldres.simulation.networks` the ResNet / FFNet of THEORY Sec. 1 and its public entry
points; :mod:`~fieldres.simulation.nlo` the statistics that the :math:`1/N` theory predicts.

References
----------
.. [1] K. Fischer, D. Dahmen, M. Helias, "Field theory for optimal signal propagation in
   ResNets", arXiv:2305.07715.
"""

from .networks import simulate_kernels as simulate_kernels
from .networks import simulate_outputs as simulate_outputs
from .networks import simulate_response as simulate_response
from .nlo import SimulatedNLO as SimulatedNLO
from .nlo import simulate_nlo as simulate_nlo
from .stats import ResponseResult as ResponseResult
from .stats import SimulationResult as SimulationResult
