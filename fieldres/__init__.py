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
from .kernels import Hyper as Hyper
from .kernels import Kernels as Kernels
from .kernels import ffnet_kernels as ffnet_kernels
from .kernels import input_kernel as input_kernel
from .kernels import output_kernel as output_kernel
from .kernels import resnet_kernels as resnet_kernels

try:
    __version__ = importlib.metadata.version("fieldres")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
