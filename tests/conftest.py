"""Shared test configuration: float64 everywhere (the science needs it)."""

import jax

jax.config.update("jax_enable_x64", True)
