"""Monte-Carlo simulation of finite networks (the one engine every check uses)."""

from .engine import ResponseResult as ResponseResult
from .engine import SimulationResult as SimulationResult
from .engine import simulate_kernels as simulate_kernels
from .engine import simulate_outputs as simulate_outputs
from .engine import simulate_response as simulate_response
from .nlo import SimulatedNLO as SimulatedNLO
from .nlo import simulate_nlo as simulate_nlo
