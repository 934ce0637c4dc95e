"""Signal propagation: response functions, the optimal residual scaling rho* and its
continuum limit."""

from ..status import Status as Status
from .optimal import Continuum as Continuum
from .optimal import OptimalScaling as OptimalScaling
from .optimal import ScalingFit as ScalingFit
from .optimal import chi_entry as chi_entry
from .optimal import rho_star as rho_star
from .optimal import rho_star_continuum as rho_star_continuum
from .optimal import rho_star_entries as rho_star_entries
from .optimal import rho_star_scaling as rho_star_scaling
from .response import Response as Response
from .response import chi_out as chi_out
from .response import response as response
from .response import response_curve as response_curve
from .response import response_jacobian as response_jacobian
