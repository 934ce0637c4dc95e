"""Real data sets (CIFAR-10, MNIST) in their original formats, and fixtures."""

from .datasets import DATA_DIR_ENV as DATA_DIR_ENV
from .datasets import DataFormatError as DataFormatError
from .datasets import DataNotFoundError as DataNotFoundError
from .datasets import load_cifar10 as load_cifar10
from .datasets import load_mnist as load_mnist
from .datasets import resolve_data_dir as resolve_data_dir
from .fakes import write_fake_cifar10 as write_fake_cifar10
from .fakes import write_fake_mnist as write_fake_mnist
from .subsets import Dataset as Dataset
from .subsets import make_dataset as make_dataset
