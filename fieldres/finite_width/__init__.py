"""Finite-width (1/N) theory: kernel covariances, mean shifts, NLO response and rho*(N)."""

from .core import FiniteWidth as FiniteWidth
from .core import SimulatedNLO as SimulatedNLO
from .core import SingleInputNLO as SingleInputNLO
from .core import WidthOptimum as WidthOptimum
from .core import bvn_excess as bvn_excess
from .core import chi_out_nlo as chi_out_nlo
from .core import finite_width as finite_width
from .core import finite_width_single as finite_width_single
from .core import gauss_cov_pair as gauss_cov_pair
from .core import rho_star_width as rho_star_width
from .core import simulate_nlo as simulate_nlo
