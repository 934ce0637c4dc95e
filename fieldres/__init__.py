"""fieldres: a finite-width field-theory calculator for deep residual networks.

Leading-order (NNGP) kernels, response functions and the optimal residual scaling
``rho*`` of rho-scaled ResNets, their 1/N finite-width corrections, Monte-Carlo simulation
of finite networks, and Bayesian (Langevin) training. Based on Fischer, Dahmen, Helias,
*Field theory for optimal signal propagation in ResNets*, arXiv:2305.07715.
"""

import importlib.metadata

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import Activation as Activation
from .activations import Erf as Erf
from .activations import GaussHermite as GaussHermite
from .activations import Linear as Linear
from .activations import ReLU as ReLU
from .activations import get_activation as get_activation
from .data import DataFormatError as DataFormatError
from .data import DataNotFoundError as DataNotFoundError
from .data import Dataset as Dataset
from .data import load_cifar10 as load_cifar10
from .data import load_mnist as load_mnist
from .data import make_dataset as make_dataset
from .data import resolve_data_dir as resolve_data_dir
from .data import write_fake_cifar10 as write_fake_cifar10
from .data import write_fake_mnist as write_fake_mnist
from .kernels import Hyper as Hyper
from .kernels import Kernels as Kernels
from .kernels import ffnet_kernels as ffnet_kernels
from .kernels import input_kernel as input_kernel
from .kernels import output_kernel as output_kernel
from .kernels import resnet_kernels as resnet_kernels
from .optimal import Continuum as Continuum
from .optimal import OptimalScaling as OptimalScaling
from .optimal import ScalingFit as ScalingFit
from .optimal import Status as Status
from .optimal import rho_star as rho_star
from .optimal import rho_star_continuum as rho_star_continuum
from .optimal import rho_star_entries as rho_star_entries
from .optimal import rho_star_scaling as rho_star_scaling
from .response import Response as Response
from .response import chi_out as chi_out
from .response import response as response
from .response import response_curve as response_curve
from .response import response_jacobian as response_jacobian

# Topic modules, imported on first access (``fieldres.meanfield`` etc.) so that the core
# calculator and the CLI start without loading the sampler stack.
_SUBMODULES = (
    "activations", "kernels", "response", "optimal", "finite_width", "simulation", "models",
    "sampling", "training", "meanfield", "resnet_meanfield", "spectra", "data", "plotting",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fieldres' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


try:
    __version__ = importlib.metadata.version("fieldres")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
