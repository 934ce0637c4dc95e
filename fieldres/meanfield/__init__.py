"""Mean-field signal propagation: feed-forward edge of chaos (this package's namespace), the
Yang-Schoenholz residual mean field (``fieldres.meanfield.residual``) and Jacobian spectra
(``fieldres.meanfield.spectra``)."""

from ..status import Status as Status
from .feedforward import CriticalPoint as CriticalPoint
from .feedforward import MeanField as MeanField
from .feedforward import PhaseDiagram as PhaseDiagram
from .feedforward import c_star as c_star
from .feedforward import chi_1 as chi_1
from .feedforward import correlation_map as correlation_map
from .feedforward import critical_sigma_w2 as critical_sigma_w2
from .feedforward import derivative_variance as derivative_variance
from .feedforward import length_map as length_map
from .feedforward import mean_field as mean_field
from .feedforward import phase_diagram as phase_diagram
from .feedforward import plot_phase_diagram as plot_phase_diagram
from .feedforward import q_star as q_star
