"""Leading-order kernels: the activation registry, Gaussian expectations and the NNGP recursion."""

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import Activation as Activation
from .activations import Erf as Erf
from .activations import GaussHermite as GaussHermite
from .activations import LeakyReLU as LeakyReLU
from .activations import Linear as Linear
from .activations import ReLU as ReLU
from .activations import evaluations_per_entry as evaluations_per_entry
from .activations import get_activation as get_activation
from .alpha_relu import AlphaReLU as AlphaReLU
from .recursion import Hyper as Hyper
from .recursion import Kernels as Kernels
from .recursion import ffnet_kernels as ffnet_kernels
from .recursion import gaussian_layer as gaussian_layer
from .recursion import input_kernel as input_kernel
from .recursion import layer_update as layer_update
from .recursion import output_kernel as output_kernel
from .recursion import propagate as propagate
from .recursion import resnet_kernels as resnet_kernels
