"""The ``fieldres`` command line: a thin layer over the public API, one module per command group."""

from ._common import CLIError as CLIError
from ._common import parse_matrix as parse_matrix
from .main import build_parser as build_parser
from .main import main as main
