"""MNIST test accuracy of SGD-trained residual nets over (depth x sigma_v^2) with theory contours.

Yang & Schoenholz (arXiv:1712.08969) Fig. 3: full residual networks (FRN) are initialised on a
grid of depths L and branch variances sigma_v^2 (tanh) or exponents alpha (alpha-ReLU, with
``--vary alpha``), trained with plain SGD, and their test accuracy is shown as a heat map.
Overlaid: contours of the mean-field prediction at initialisation, the gradient explosion
log chi^(0)/chi^(L) for tanh, log s^(L) (squared distance of two inputs) for alpha-ReLU,
computed by :func:`fieldres.meanfield.residual.resnet_meanfield` from the data's own input
kernel. The theory claims that the best accuracy follows one contour across depths: for each
depth the best cell is marked and its theory value reported (a constant value across depths
supports the claim).

Network: x^(0) = W_in x / sqrt(d_in) (sigma_in^2 = 1), L FRN blocks
h = W x + b, x <- x + V tanh(h) + a, read-out softmax(W_out x^(L) / sqrt(N)). All grid cells
of one depth are trained together (vmap over the initial parameters).

The smoke preset trains tiny nets on a tiny subset; pass ``--data-dir`` to use another MNIST
folder (the tests use a generated fixture). Without MNIST the script says so and exits cleanly.

Usage: ``python experiments/mnist_sgd_grid.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import math

import _common as common
import jax
import jax.numpy as jnp
import numpy as np

PRESETS = {
    "smoke": dict(width=16, depths=(2, 4), sigma_v2=(0.1, 1.0, 3.0), alphas=(0.6, 0.8),
                  n_train=100, n_test=50, epochs=2, batch=20, lr=0.05),
    "default": dict(width=64, depths=(5, 10, 20), sigma_v2=(0.05, 0.2, 1.0, 2.0),
                    alphas=(0.6, 0.7, 0.8, 0.9), n_train=2000, n_test=500, epochs=2, batch=64,
                    lr=0.01),
    "paper": dict(width=128, depths=(5, 10, 20, 40, 80),
                  sigma_v2=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0),
                  alphas=(0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
                  n_train=10000, n_test=2000, epochs=3, batch=64, lr=0.01),
}
# fixed variances (tanh grid) as in Yang & Schoenholz's Fig. 3 set-ups
SIGMA_W2, SIGMA_B2, SIGMA_A2 = 1.0, 0.5, 0.5
ALPHA_SIGMA_V2 = 1.0


def _extra(p):
    p.add_argument("--data-dir", help="MNIST folder (else $FIELDRES_DATA_DIR or ../shared/data)")
    p.add_argument("--vary", choices=["sigma_v2", "alpha"], default="sigma_v2",
                   help="second grid axis: sigma_v^2 (tanh) or alpha (alpha-ReLU)")


def _init(key, d_in, width, depth, sw2, sb2, sv2, sa2):
    ks = jax.random.split(key, 7)
    n = lambda k, shape: jax.random.normal(k, shape, jnp.float32)  # noqa: E731
    return dict(
        W_in=n(ks[0], (d_in, width)) / math.sqrt(d_in),
        W=n(ks[1], (depth, width, width)) * jnp.sqrt(sw2 / width),
        b=n(ks[2], (depth, width)) * jnp.sqrt(sb2),
        V=n(ks[3], (depth, width, width)) * jnp.sqrt(sv2 / width),
        a=n(ks[4], (depth, width)) * jnp.sqrt(sa2),
        W_out=n(ks[5], (width, 10)) / math.sqrt(width),
        b_out=jnp.zeros(10, jnp.float32),
    )


def _forward(params, x, phi):
    h0 = x @ params["W_in"]

    def block(h, layer):
        W, b, V, a = layer
        return h + phi(h @ W + b) @ V + a, None

    h, _ = jax.lax.scan(block, h0, (params["W"], params["b"], params["V"], params["a"]))
    return h @ params["W_out"] + params["b_out"]


def _loss(params, x, y, phi):
    logits = _forward(params, x, phi)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(y, 10), axis=-1))


def _train_grid(key, ds, depth, cells, p, vary):
    """Train one net per grid cell (vmapped); returns test accuracies (nan if diverged)."""
    from fieldres.meanfield.residual import AlphaReLU

    x_tr = jnp.asarray(ds.x_train, jnp.float32)
    y_tr = jnp.asarray(ds.y_train)
    x_te = jnp.asarray(ds.x_test, jnp.float32)
    y_te = np.asarray(ds.y_test)
    d_in = x_tr.shape[1]
    keys = jax.random.split(key, len(cells))
    if vary == "sigma_v2":
        phi = jnp.tanh
        params = jax.vmap(lambda k, v: _init(k, d_in, p["width"], depth, SIGMA_W2, SIGMA_B2, v,
                                             SIGMA_A2))(keys, jnp.asarray(cells, jnp.float32))
        groups = [(phi, params, list(range(len(cells))))]
    else:  # one activation per alpha: train each separately (the function is static)
        groups = []
        for i, al in enumerate(cells):
            phi = AlphaReLU(al).fn
            prm = jax.vmap(lambda k: _init(k, d_in, p["width"], depth, SIGMA_W2, SIGMA_B2,
                                           ALPHA_SIGMA_V2, SIGMA_A2))(keys[i:i + 1])
            groups.append((phi, prm, [i]))
    out = np.full(len(cells), np.nan)
    n = x_tr.shape[0]
    steps_per_epoch = max(n // p["batch"], 1)
    for phi, params, idx in groups:
        grad = jax.jit(jax.vmap(jax.grad(lambda prm, x, y, phi=phi: _loss(prm, x, y, phi)),
                                in_axes=(0, None, None)))
        predict = jax.jit(jax.vmap(lambda prm, x, phi=phi: _forward(prm, x, phi),
                                   in_axes=(0, None)))
        rng = np.random.default_rng(int(jax.random.randint(keys[idx[0]], (), 0, 2**31 - 1)))
        for _ in range(p["epochs"]):
            perm = rng.permutation(n)
            for s in range(steps_per_epoch):
                sel = perm[s * p["batch"]:(s + 1) * p["batch"]]
                g = grad(params, x_tr[sel], y_tr[sel])
                params = jax.tree.map(lambda w, gw: w - p["lr"] * gw, params, g)
        logits = np.asarray(predict(params, x_te))
        acc = (logits.argmax(-1) == y_te[None]).mean(-1)
        finite = np.all(np.isfinite(logits), axis=(1, 2))
        out[idx] = np.where(finite, acc, np.nan)
    return out


def _theory(depths, cells, vary, K0):
    from fieldres.meanfield import residual as rm

    grid = np.full((len(depths), len(cells)), np.nan)
    for i, L in enumerate(depths):
        for j, c in enumerate(cells):
            if vary == "sigma_v2":
                mf = rm.resnet_meanfield("full", L, rm.ResHyper(SIGMA_W2, SIGMA_B2, c, SIGMA_A2),
                                         "tanh", K0[:1, :1])
                grid[i, j] = float(mf.log_chi_ratio[-1])
            else:
                mf = rm.resnet_meanfield("full", L, rm.ResHyper(SIGMA_W2, SIGMA_B2,
                                                                ALPHA_SIGMA_V2, SIGMA_A2),
                                         rm.AlphaReLU(c), K0)
                grid[i, j] = float(np.log(mf.s[-1]))
    return grid


def compute(preset: str, seed: int, data_dir, vary: str) -> dict:
    import fieldres

    p = PRESETS[preset]
    cells = p["sigma_v2"] if vary == "sigma_v2" else p["alphas"]
    res: dict = {"parameters": dict(preset=preset, seed=seed, vary=vary, sigma_w2=SIGMA_W2,
                                    sigma_b2=SIGMA_B2, sigma_a2=SIGMA_A2, **p)}
    try:
        ds = fieldres.make_dataset("mnist", classes=[str(i) for i in range(10)],
                                   n_train=p["n_train"], n_test=p["n_test"], seed=seed,
                                   data_dir=data_dir, labels="int")
    except fieldres.DataNotFoundError as e:
        res["skipped"] = f"MNIST not found, nothing trained: {' '.join(str(e).split())}"
        return res
    X = ds.x_train
    G = X @ X.T / X.shape[1]
    off = G[~np.eye(len(G), dtype=bool)].mean()
    K0 = np.array([[np.diag(G).mean(), off], [off, np.diag(G).mean()]])
    acc = np.stack([_train_grid(jax.random.fold_in(jax.random.PRNGKey(seed), i), ds, L, cells,
                                p, vary) for i, L in enumerate(p["depths"])])
    theory = _theory(p["depths"], cells, vary, K0)
    best = [int(np.nanargmax(a)) if np.any(np.isfinite(a)) else None for a in acc]
    at_best = [None if b is None else float(theory[i, b]) for i, b in enumerate(best)]
    res.update(
        cells=list(cells),
        depths=list(p["depths"]),
        K0=K0,
        test_accuracy=acc,
        theory=theory,
        theory_quantity="log chi0/chiL" if vary == "sigma_v2" else "log s^(L)",
        best_cell_per_depth=[None if b is None else cells[b] for b in best],
        theory_at_best=at_best,
        chance_level=0.1,
    )
    return res


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    acc = np.asarray(res["test_accuracy"], float)
    cells, depths = np.asarray(res["cells"]), np.asarray(res["depths"])
    mesh = ax.pcolormesh(np.arange(len(cells)), np.arange(len(depths)), np.ma.masked_invalid(acc),
                         shading="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="test accuracy")
    th = np.asarray(res["theory"], float)
    if np.all(np.isfinite(th)) and th.shape[0] > 1 and th.shape[1] > 1:
        cs = ax.contour(np.arange(len(cells)), np.arange(len(depths)), th, colors="w",
                        linestyles="--", levels=6)
        ax.clabel(cs, fontsize=7, fmt="%.3g")
    for i, b in enumerate(res["best_cell_per_depth"]):
        if b is not None:
            ax.plot(list(cells).index(b), i, "r*", ms=12)
    ax.set_xticks(np.arange(len(cells)), [f"{c:g}" for c in cells], fontsize=7)
    ax.set_yticks(np.arange(len(depths)), [str(d) for d in depths])
    ax.set_xlabel(r"$\sigma_v^2$" if res["parameters"]["vary"] == "sigma_v2" else r"$\alpha$")
    ax.set_ylabel("depth $L$")
    ax.set_title(f"MNIST, SGD; white: theory {res['theory_quantity']}; red: best per depth",
                 fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    common.enable_x64()
    args = common.parse_args(__doc__.splitlines()[0], argv, extra=_extra)
    timer = common.Timer()
    res = compute(args.preset, args.seed, args.data_dir, args.vary)
    png, js = common.out_paths(args.out, "mnist_sgd_grid")
    if "skipped" in res:
        res["runtime_s"] = timer()
        common.save_json(res, js)
        print(f"mnist_sgd_grid: skipped: {res['skipped']}")
        return res
    plot(res, png)
    res["runtime_s"] = timer()
    common.save_json(res, js)
    print(f"MNIST grid ({args.preset}, vary {args.vary}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    for L, row, b, t in zip(res["depths"], res["test_accuracy"], res["best_cell_per_depth"],
                            res["theory_at_best"]):
        print(f"  L = {L:3d}: accuracy " + " ".join(f"{a:.3f}" for a in row)
              + f"; best at {b}, theory {res['theory_quantity']} there = "
              + ("—" if t is None else f"{t:.3g}"))
    return res


if __name__ == "__main__":
    main()
