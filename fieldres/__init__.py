"""fieldres: a finite-width field-theory calculator for deep residual networks.

Leading-order (NNGP) kernels, response functions and the optimal residual scaling
``rho*`` of rho-scaled ResNets, their 1/N finite-width corrections, Monte-Carlo simulation
of finite networks, and Bayesian (Langevin) training. Based on Fischer, Dahmen, Helias,
*Field theory for optimal signal propagation in ResNets*, arXiv:2305.07715.
"""

import importlib.metadata

from ._validation import FieldresInputError as FieldresInputError
from .data.datasets import DataFormatError as DataFormatError
from .data.datasets import DataNotFoundError as DataNotFoundError
from .data.datasets import load_cifar10 as load_cifar10
from .data.datasets import load_mnist as load_mnist
from .data.datasets import resolve_data_dir as resolve_data_dir
from .data.fakes import write_fake_cifar10 as write_fake_cifar10
from .data.fakes import write_fake_mnist as write_fake_mnist
from .data.subsets import Dataset as Dataset
from .data.subsets import make_dataset as make_dataset
from .defaults import Hyper as Hyper
from .kernels.activations import ACTIVATIONS as ACTIVATIONS
from .kernels.activations import Activation as Activation
from .kernels.activations import Erf as Erf
from .kernels.activations import GaussHermite as GaussHermite
from .kernels.activations import Linear as Linear
from .kernels.activations import ReLU as ReLU
from .kernels.activations import get_activation as get_activation
from .kernels.recursion import Kernels as Kernels
from .kernels.recursion import ffnet_kernels as ffnet_kernels
from .kernels.recursion import input_kernel as input_kernel
from .kernels.recursion import output_kernel as output_kernel
from .kernels.recursion import resnet_kernels as resnet_kernels
from .signal.optimal import Continuum as Continuum
from .signal.optimal import OptimalScaling as OptimalScaling
from .signal.optimal import ScalingFit as ScalingFit
from .signal.optimal import rho_star as rho_star
from .signal.optimal import rho_star_continuum as rho_star_continuum
from .signal.optimal import rho_star_entries as rho_star_entries
from .signal.optimal import rho_star_scaling as rho_star_scaling
from .signal.response import Response as Response
from .signal.response import chi_out as chi_out
from .signal.response import response as response
from .signal.response import response_curve as response_curve
from .signal.response import response_jacobian as response_jacobian
from .status import Status as Status

# Topic modules, imported on first access (``fieldres.meanfield`` etc.) so that the core
# calculator and the CLI start without loading the sampler stack.
_SUBMODULES = (
    "kernels", "signal", "finite_width", "simulation", "bayes", "meanfield", "data", "plotting",
    "cli",
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
