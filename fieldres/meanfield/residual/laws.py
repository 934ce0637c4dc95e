# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Derived large-depth laws of the residual mean field, fits of the recursion or of
simulations to them, and their plot."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special
from jaxtyping import ArrayLike

from ..._validation import FieldresInputError
from ...kernels.activations import Activation, Erf, GaussHermite, ReLU
from ...kernels.alpha_relu import _c_alpha
from .recursion import (
    AlphaReLU,
    ResHyper,
    ResMeanField,
    _branch,
    _check_kind,
    resolve_activation,
)
from .simulation import ResSimulation

# ----------------------------------------------------------------------------------------
# Asymptotic laws (derived) and fits (of the recursion or of simulations)
# ----------------------------------------------------------------------------------------


class Law(NamedTuple):
    r"""A derived large-depth law of one quantity.

    ``form``:
      ``"power"``: :math:`y \simeq C l^\kappa`;
      ``"approach"``: :math:`|y - y_\infty| \simeq C l^{-\kappa}` (``limit`` = :math:`y_\infty`);
      ``"stretched"``: :math:`\log y \simeq C l^\kappa` (``y`` = :math:`\chi^{(0)}/\chi^{(l)}`);
      ``"exponential"``: :math:`\log y \simeq \kappa\, l + \mu \log l + \mathrm{const}`
      (``log_power`` = :math:`\mu`).
    """

    quantity: str
    form: str
    exponent: float
    coefficient: float = math.nan
    limit: float = math.nan
    log_power: float = 0.0
    correction: float = math.nan  # exponent of the leading relative correction, for fits
    note: str = ""
    forcing: bool = True  # "approach": whether finite-length terms force y - y_inf directly


def _saturating_odd(act: Activation) -> float | None:
    r""":math:`I_2 = \int\phi'(x)^2 dx` for tanh/erf (odd, :math:`\phi(\pm\infty) = \pm 1`), else None."""
    if isinstance(act, Erf) or act.name in ("erf-quadrature",):
        return 4.0 / math.sqrt(2.0 * math.pi)
    if isinstance(act, GaussHermite) and act.name == "tanh":
        return 4.0 / 3.0
    return None


def _tanh_e_star(a: float, beta: float) -> float:
    B = a + beta
    if beta == 0.0:
        return 0.0
    g = lambda e: a * (2.0 / math.pi) * math.asin(e) + beta - B * e  # noqa: E731
    return float(scipy.optimize.brentq(g, 0.0, 1.0 - 1e-15, xtol=1e-16, rtol=1e-15))


def _alpha_e_star(act: AlphaReLU) -> tuple[float, float]:
    """Fixed point of the normalised kernel and its slope there."""
    J = lambda e: float(act.normalised_kernel(e))  # noqa: E731
    e_star = float(scipy.optimize.brentq(lambda e: J(e) - e, 0.0, 1.0 - 1e-9, xtol=1e-15,
                                         rtol=1e-15))
    slope = float(jax.grad(lambda e: act.normalised_kernel(e))(jnp.asarray(e_star)))
    return e_star, slope


def asymptotic_laws(
    kind: str = "full",
    activation: str | Activation = "tanh",
    hyper: ResHyper = ResHyper(),
) -> dict[str, Law]:
    r"""The derived large-depth laws of :math:`p, e, s` and :math:`\chi^{(0)}/\chi^{(l)}`.

    Keys ``"p"``, ``"e"`` (for ReLU: ``"1-e"``), ``"s"``, ``"chi"``. Covers tanh and erf
    (odd, saturating), ReLU and :class:`AlphaReLU` with ``1/2 < alpha < 1``; other
    activations raise ``ValueError`` (their recursions still run in
    :func:`resnet_meanfield`). See the module docstring for the formulas.
    """
    _check_kind(kind)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    omega, _, a, beta = (float(x) for x in _branch(kind, hyper))
    if a <= 0:
        raise FieldresInputError("the residual branch has zero variance (sigma_v2 or sigma_w2 = 0)")
    I2 = _saturating_odd(act)
    if I2 is not None:
        B = a + beta
        e_star = _tanh_e_star(a, beta)
        delta = 1.0 - (a / B) * (2.0 / math.pi) / math.sqrt(1.0 - e_star**2)
        A = 2.0 * a * math.sqrt(omega) * I2 / math.sqrt(2.0 * math.pi * B)
        # the O(q^-1/2) = O(l^-1/2) departures of tanh from sign() force e - e* at order
        # l^-1/2: the approach is l^-min(delta, 1/2)
        d_eff = min(delta, 0.5)
        return {
            "p": Law("p", "power", 1.0, B, correction=0.5,
                     note="p ~ (a + beta) l: the branch saturates, V(q) -> 1"),
            "e": Law("e", "approach", delta, limit=e_star, correction=0.5,
                     # no bias in the branch: e* = 0 is a symmetry point of the odd phi
                     forcing=beta != 0.0 or float(_branch(kind, hyper)[1]) != 0.0,
                     note="e - e* ~ A l^-delta + B l^-1/2 (observed decay l^-min(delta, 1/2)); "
                          "(a+beta) e* = a (2/pi) arcsin e* + beta, "
                          "delta = 1 - a/(a+beta) 2/(pi sqrt(1-e*^2))"),
            "s": Law("s", "power", 1.0, 2.0 * B * (1.0 - e_star), correction=d_eff,
                     note="s ~ 2 (a + beta)(1 - e*) l"),
            "chi": Law("chi", "stretched", 0.5, A, correction=0.5,
                       note="log chi0/chil ~ A sqrt(l), A = 2 a sqrt(omega) I2/sqrt(2 pi (a+beta))"),
        }
    if isinstance(act, ReLU) or (isinstance(act, AlphaReLU) and act.alpha == 1.0):
        r = a * omega / 2.0
        rate = math.log1p(r)
        k = (r / (1.0 + r)) * 2.0 * math.sqrt(2.0) / (3.0 * math.pi)
        return {
            "p": Law("p", "exponential", rate, note="p ~ (1 + a omega/2)^l"),
            "e": Law("1-e", "power", -2.0, 4.0 / k**2, limit=1.0, correction=1.0,
                     note="1 - e ~ 4/(k l)^2, k = r/(1+r) 2 sqrt(2)/(3 pi), r = a omega/2"),
            "s": Law("s", "exponential", rate, log_power=-2.0,
                     note="s ~ (1 + a omega/2)^l l^-2"),
            "chi": Law("chi", "exponential", rate, note="chi0/chil = (1 + a omega/2)^l exactly"),
        }
    if isinstance(act, AlphaReLU):
        al = act.alpha
        if not (0.5 < al < 1.0):
            raise FieldresInputError(f"the alpha-ReLU laws are derived for 1/2 < alpha < 1, got {al}")
        A = a * _c_alpha(al) * omega**al
        beta_p = 1.0 / (1.0 - al)
        Cp = ((1.0 - al) * A) ** beta_p
        e_star, slope = _alpha_e_star(act)
        delta = (1.0 - slope) / (1.0 - al)
        # relative corrections that force e - e*: discreteness / initial length (l^-1) and
        # the additive bias of the length (l^-alpha/(1-alpha))
        force = 1.0 if beta == 0.0 else min(1.0, al / (1.0 - al))
        d_eff = min(delta, force)
        kappa = al**2 / ((1.0 - al) * (2.0 * al - 1.0))
        return {
            "p": Law("p", "power", beta_p, Cp, correction=1.0,
                     note="p ~ [(1-alpha) a c_alpha omega^alpha l]^(1/(1-alpha))"),
            "e": Law("e", "approach", delta, limit=e_star, correction=force,
                     forcing=beta != 0.0 or float(_branch(kind, hyper)[1]) != 0.0,
                     note="e - e* ~ A l^-delta + B l^-f (observed decay l^-min(delta, f)); "
                          "J_alpha(e*) = e*, delta = (1 - J_alpha'(e*))/(1 - alpha)"),
            "s": Law("s", "power", beta_p, 2.0 * (1.0 - e_star) * Cp, correction=d_eff,
                     note="s ~ 2 (1 - e*) p"),
            "chi": Law("chi", "power", kappa, correction=1.0,
                       note="chi0/chil ~ l^(alpha^2/((1-alpha)(2 alpha-1)))"),
        }
    raise FieldresInputError(
        f"asymptotic laws are derived for tanh, erf, relu and alpha-relu, not {act.name!r}")


class Fit(NamedTuple):
    """A fitted large-depth law: exponent (or rate) with its least-squares standard error."""

    quantity: str
    form: str
    exponent: float
    stderr: float
    coefficient: float
    l_min: int
    l_max: int


def _lstsq(X, y):
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(len(y) - X.shape[1], 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.pinv(X.T @ X)
    return coef, np.sqrt(np.maximum(np.diag(cov), 0.0))


def _tail(l, y, l_min, n_points=200):
    l = np.asarray(l, float)
    y = np.asarray(y, float)
    sel = (l >= l_min) & np.isfinite(y)
    l, y = l[sel], y[sel]
    if len(l) > n_points:  # geometric thinning: every decade weighs the same
        idx = np.unique(np.round(np.geomspace(1, len(l), n_points)).astype(int) - 1)
        l, y = l[idx], y[idx]
    return l, y


def _profile(lt, yt, design, grid):
    """Minimise the residual sum of squares of ``yt ~ design(kappa) @ coef`` over ``kappa``.

    Least squares at every ``kappa`` of ``grid``, a parabola through the best three points;
    the standard error of ``kappa`` comes from the curvature of the sum of squares.
    """

    def sse(kappa):
        X = design(kappa)
        coef, _ = _lstsq(X, yt)
        r = yt - X @ coef
        return float(r @ r), coef

    vals = np.array([sse(k)[0] for k in grid])
    i = int(np.clip(np.argmin(vals), 1, len(grid) - 2))
    a2, a1, _ = np.polyfit(grid[i - 1:i + 2], vals[i - 1:i + 2], 2)
    kappa = float(-a1 / (2 * a2)) if a2 > 0 else float(grid[i])
    s, coef = sse(kappa)
    dof = max(len(yt) - design(kappa).shape[1] - 1, 1)
    se = float(np.sqrt(2.0 * (s / dof) / (2.0 * a2))) if a2 > 0 else math.nan
    return kappa, se, coef


def fit_law(
    layers: ArrayLike,
    values: ArrayLike,
    law: Law,
    *,
    l_min: int | None = None,
    corrections: bool = True,
) -> Fit:
    r"""Fit the form of ``law`` to ``values`` at layers ``>= l_min`` (default ``L/10``).

    The exponent (or rate) is always a free parameter; with ``corrections`` the known
    subleading terms are extra regressors so that they do not bias it:

    * ``"power"``: :math:`\log y = \kappa\log l + c + d_1 l^{-\omega} + d_2 l^{-2\omega}`
      (:math:`\omega` = ``law.correction``, the relative correction);
    * ``"approach"``: :math:`y - y_\infty = A l^{-\kappa} + B l^{-f}`, :math:`\kappa` profiled
      (:math:`f` = ``law.correction``, the order at which the finite-length terms force the
      approach);
    * ``"stretched"`` (``values`` = :math:`\log\chi^{(0)}/\chi^{(l)}`):
      :math:`A l^\kappa + B\log l + C`, :math:`\kappa` profiled;
    * ``"exponential"``: :math:`\log y - \mu\log l = \kappa l + c + d/l`
      (:math:`\mu` = ``law.log_power``).
    """
    l = np.asarray(layers, float)
    y = np.asarray(values, float)
    L = int(np.max(l))
    l_min = max(1, L // 10) if l_min is None else int(l_min)
    has_corr = corrections and np.isfinite(law.correction)
    if law.form == "power":
        lt, yt = _tail(l, y, l_min)
        lt, yt = lt[yt > 0], yt[yt > 0]
        cols = [np.log(lt), np.ones_like(lt)]
        if corrections:
            # l^-w and l^-2w for the law's own correction (skipped when w < 0.3: over one
            # or two decades l^-w is then nearly collinear with log l and the constant) and
            # l^-1 for the discreteness / initial condition of the recursion
            om = law.correction if has_corr else math.nan
            expo = ([om, 2.0 * om] if om >= 0.3 else []) + [1.0]
            cols += [lt ** (-w) for w in sorted(set(expo))]
        coef, se = _lstsq(np.stack(cols, 1), np.log(yt))
        return Fit(law.quantity, law.form, coef[0], se[0], float(np.exp(coef[1])),
                   int(lt[0]), int(lt[-1]))
    if law.form == "approach":
        lt, yt = _tail(l, y - law.limit, l_min)

        def design(kappa):
            cols = [lt ** (-kappa)]
            if has_corr:
                # the finite-length terms both correct the rate (l^-kappa-f) and, unless the
                # fixed point is a symmetry point (forcing = False), force the approach (l^-f)
                cols.append(lt ** (-kappa - law.correction))
                if law.forcing and abs(law.correction - kappa) > 1e-3:
                    cols.append(lt ** (-law.correction))
            return np.stack(cols, 1)

        kappa, se, coef = _profile(lt, yt, design, np.linspace(0.01, 3.0, 300))
        return Fit(law.quantity, law.form, kappa, se, float(abs(coef[0])), int(lt[0]),
                   int(lt[-1]))
    if law.form == "exponential":
        lt, yt = _tail(l, y, l_min)
        cols = [lt, np.ones_like(lt)]
        if corrections:
            cols += [1.0 / lt, 1.0 / lt**2]
        coef, se = _lstsq(np.stack(cols, 1), np.log(yt) - law.log_power * np.log(lt))
        return Fit(law.quantity, law.form, coef[0], se[0], float(np.exp(coef[1])),
                   int(lt[0]), int(lt[-1]))
    if law.form == "stretched":
        lt, yt = _tail(l, y, l_min)  # y = log chi ratio

        def design(kappa):
            cols = [lt**kappa, np.ones_like(lt)] + ([np.log(lt)] if corrections else [])
            return np.stack(cols, 1)

        kappa, se, coef = _profile(lt, yt, design, np.linspace(0.05, 0.95, 181))
        return Fit(law.quantity, law.form, kappa, se, float(coef[0]), int(lt[0]), int(lt[-1]))
    raise ValueError(f"unknown law form {law.form!r}")


def _law_values(mf: ResMeanField, law: Law) -> np.ndarray:
    if law.quantity == "p":
        return np.asarray(mf.p)
    if law.quantity == "s":
        return np.asarray(mf.s)
    if law.quantity == "e":
        return np.asarray(mf.e)
    if law.quantity == "1-e":
        return 1.0 - np.asarray(mf.e)
    if law.quantity == "chi":
        lc = np.asarray(mf.log_chi_ratio)
        return lc if law.form == "stretched" else np.exp(lc)
    raise ValueError(law.quantity)


def fit_laws(mf: ResMeanField, laws: dict[str, Law], *, l_min: int | None = None
             ) -> dict[str, Fit]:
    """:func:`fit_law` for every law on the matching trajectory of ``mf``."""
    layers = mf.layers
    out = {}
    for key, law in laws.items():
        vals = _law_values(mf, law)
        if law.quantity in ("e", "1-e", "s") and not np.all(np.isfinite(vals[1:])):
            continue  # single-input trajectory
        out[key] = fit_law(layers, vals, law, l_min=l_min)
    return out


def _law_curve(law: Law, mf: ResMeanField):
    """(label, y-values to plot on log-log axes, slope of the prediction there)."""
    l = mf.layers
    if law.quantity == "p":
        return r"$p^{(l)}$", np.asarray(mf.p), None
    if law.quantity == "s":
        return r"$s^{(l)}$", np.asarray(mf.s), None
    if law.quantity == "e":
        return r"$|e^{(l)} - e^*|$", np.abs(np.asarray(mf.e) - law.limit), None
    if law.quantity == "1-e":
        return r"$1 - e^{(l)}$", 1.0 - np.asarray(mf.e), None
    if law.form == "stretched":
        return r"$\log\chi^{(0)}/\chi^{(l)}$", np.asarray(mf.log_chi_ratio), l
    return r"$\chi^{(0)}/\chi^{(l)}$", np.exp(np.asarray(mf.log_chi_ratio)), l


def plot_laws(
    mf: ResMeanField,
    laws: dict[str, Law],
    fits: dict[str, Fit] | None = None,
    *,
    simulation: ResSimulation | None = None,
    title: str | None = None,
    out=None,
):
    r"""Log-log dynamics of :math:`p, e, s, \chi` with the derived slopes (dashed).

    Power laws and approaches appear as straight lines of the predicted slope; for the
    stretched exponential :math:`\log\chi^{(0)}/\chi^{(l)}` is plotted (slope 1/2); for
    exponential laws :math:`\log y` is plotted against ``l`` on linear axes (slope = rate).
    Simulation means :math:`\pm` standard errors are overlaid where given.
    """
    from ... import plotting

    plt = plotting.plt
    keys = [k for k in ("p", "e", "s", "chi") if k in laws]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.2))
    l = mf.layers.astype(float)
    sim_map = {"p": "p", "s": "s", "chi": "chi"}
    for ax, k in zip(np.atleast_1d(axes), keys):
        law = laws[k]
        label, y, _ = _law_curve(law, mf)
        fit = None if fits is None else fits.get(k)
        sel = (l >= 1) & np.isfinite(y) & (y > 0)
        if law.form == "exponential":
            ax.plot(l[sel], np.log(y[sel]), "-", color="tab:blue", label="mean field")
            anchor = np.log(y[sel][-1])
            pred = anchor + law.exponent * (l[sel] - l[sel][-1]) + law.log_power * np.log(
                l[sel] / l[sel][-1])
            ax.plot(l[sel], pred, "k--", lw=1, label=f"derived rate {law.exponent:.4g}")
            ax.set_xlabel("layer $l$")
            ax.set_ylabel(f"log {label}")
            if simulation is not None and k in sim_map:
                m = simulation.mean[sim_map[k]]
                se = simulation.stderr[sim_map[k]]
                ls = np.arange(len(m))
                ax.errorbar(ls[1:], np.log(m[1:]), yerr=se[1:] / m[1:], fmt="o", ms=3,
                            color="tab:red", label=f"N = {simulation.width}")
        else:
            ax.loglog(l[sel], y[sel], "-", color="tab:blue", label="mean field")
            slope = {"power": law.exponent, "approach": -law.exponent,
                     "stretched": law.exponent}[law.form]
            if law.form == "approach" and np.isfinite(law.correction):
                slope = -min(law.exponent, law.correction) if law.forcing else slope
            x_end, y_end = l[sel][-1], y[sel][-1]
            xs = np.geomspace(max(1.0, x_end / 300), x_end, 50)
            ax.loglog(xs, y_end * (xs / x_end) ** slope, "k--", lw=1,
                      label=f"derived slope {slope:.4g}")
            ax.set_xlabel("layer $l$")
            ax.set_ylabel(label)
            if simulation is not None and k in sim_map:
                m = simulation.mean[sim_map[k]]
                se = simulation.stderr[sim_map[k]]
                if law.form == "stretched":
                    m, se = np.log(m), se / m
                ls = np.arange(len(m))
                ok = ls >= 1
                ax.errorbar(ls[ok], m[ok], yerr=se[ok], fmt="o", ms=3, color="tab:red",
                            label=f"N = {simulation.width}")
        if fit is not None:
            ax.set_title(f"fit {fit.exponent:.4g} ± {fit.stderr:.1g} "
                         f"(derived {law.exponent:.4g})", fontsize=8)
        ax.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plotting.save(fig, out)
    return fig
