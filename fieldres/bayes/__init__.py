"""Bayesian networks: the ResNet model in whitened coordinates, the samplers and training.

Submodules: ``models`` (the network and its prior), ``samplers`` (MALA, NUTS, SGLD on
blackjax's documented API), ``sampling`` (the multi-chain driver), ``diagnostics`` (R̂ and
ESS from ArviZ), ``training`` (posterior sampling on data sets). They are imported on first
access, so that ``import fieldres.bayes`` does not load blackjax.
"""

import importlib

_SUBMODULES = ("models", "samplers", "sampling", "diagnostics", "measures", "training", "sweep")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fieldres.bayes' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
