"""Figures (matplotlib, headless). Every function returns the ``Figure`` and saves it if asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: fieldres never opens windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_scaling", "plot_response_curves", "save"]


def save(fig, out: str | Path | None):
    """Save ``fig`` to ``out`` (parent folders created) and return the path, or ``None``."""
    if out is None:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    return out


def plot_scaling(
    depths: Sequence[int],
    rho_diag: Sequence[float],
    rho_off: Sequence[float],
    exponent_diag: float,
    exponent_off: float,
    *,
    continuum: Sequence[float] | None = None,
    out: str | Path | None = None,
):
    """``rho*(L)`` on log-log axes with a ``1/sqrt(L)`` guide (the paper's Fig. 4c)."""
    depths = np.asarray(depths, float)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.loglog(depths, rho_diag, "o-", color="tab:blue",
              label=rf"diagonal, slope {exponent_diag:.3f}")
    ax.loglog(depths, rho_off, "s-", color="tab:green",
              label=rf"off-diagonal, slope {exponent_off:.3f}")
    if continuum is not None:
        ax.loglog(depths, continuum, "k:", label="continuum limit (diagonal)")
    ref = np.nanmax(np.asarray(rho_off, float) * np.sqrt(depths))
    ax.loglog(depths, ref * 1.3 / np.sqrt(depths), color="0.6", lw=3, alpha=0.5,
              label=r"$\propto 1/\sqrt{L}$")
    ax.set_xlabel("depth $L$")
    ax.set_ylabel(r"optimal scaling $\rho^*$")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save(fig, out)
    return fig


def plot_response_curves(
    rho: Sequence[float],
    curves: Mapping[str, Mapping[int, Sequence[float]]],
    rho_star: Mapping[str, Mapping[int, float]] | None = None,
    *,
    out: str | Path | None = None,
):
    """``chi^out(rho)`` for several depths, one panel per summary (the paper's Fig. 4a, b).

    ``curves[summary][L]`` is the response on the ``rho`` grid; ``rho_star[summary][L]`` marks
    the maximum.
    """
    panels = list(curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        depths = sorted(curves[name])
        cmap = plt.get_cmap("Blues" if name.startswith("diag") else "Greens")
        for i, L in enumerate(depths):
            color = cmap(0.35 + 0.6 * i / max(len(depths) - 1, 1))
            ax.semilogx(rho, curves[name][L], color=color, label=f"L = {L}")
            if rho_star is not None and np.isfinite(rho_star[name].get(L, np.nan)):
                r = rho_star[name][L]
                ax.axvline(r, color=color, ls=":", lw=1)
        ax.set_xlabel(r"residual scaling $\rho$")
        ax.set_ylabel(r"$\chi^{\mathrm{out}}_{\alpha\alpha}$" if name.startswith("diag")
                      else r"$\chi^{\mathrm{out}}_{\alpha\beta}$")
        ax.set_title(name)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save(fig, out)
    return fig
