"""The gradient SNR of the encoder and the decoder against K, for IWAE, DReG and STL.

    python benchmarks/bench_gradient_snr.py --checkpoint /tmp/digits_snr.pt

Trains (or, when ``--checkpoint`` exists, loads) the main job's model on the bundled
digits (z = 8, one hidden layer of 256 units, Bernoulli likelihood, Trace_ELBO), for
``--epochs`` epochs (default 200, not :data:`pyro_vae.train.MAIN_JOB`'s 800 with
patience 100, to keep the default run under ~10 minutes on one core; seed 0). Then, at
those fixed parameters, :func:`pyro_vae.gradient_snr` of the minibatch gradient on one
fixed batch of the first ``--points`` test digits (default 50), ``--draws`` draws
(default 300), for each family of ``--families`` (default ``iwae dreg``) at K ∈ ``--ks``
(default 1 3 10 30 100 300 1000), and STL at K = 1 (``--stl``; DReG at K = 1 is STL, and
``make_elbo`` refuses ``dreg:1``). A spec that :func:`pyro_vae.make_elbo` refuses
(``dreg:1``; every ``dreg`` spec before DReG was added) is skipped, with a printed line
and the reason under ``"skipped"``. For each family and group: the least-squares slope
of log(median SNR) against log K, with its s.e. from the residuals (Rainforth et al.
2018 predict −½ for the IWAE encoder, +½ for its decoder; DReG's encoder ≥ 0). Beside them,
``"weights_khat"``: the Pareto k̂ of the importance weights on the same points (IWAE-5000),
which says whether those asymptotics can hold at all (IWAE's needs k < ½; DReG's rise
needs a finite variance of w², k < ¼). One torch thread. Writes JSON and a log-log figure
atomically.

The cost grows as draws × K × points × one pass of the networks: K = 1000 dominates
(about 2 minutes of IWAE draws at the defaults, 1.5 times that for DReG; 7 minutes in
all). The encoder's median SNR cannot be resolved below the noise floor ≈ 0.67/√draws
(the median of |N(0, 1)|/√draws), which flattens its slope at large K; its signal grows
as √points.
"""

import argparse
import json
import math
import os
import time

import torch
from matplotlib.figure import Figure

from pyro_vae import VAE, evaluate, fit, gradient_snr, load_checkpoint, make_elbo, save_checkpoint
from pyro_vae._io import atomic_path
from pyro_vae.data import load_digits
from pyro_vae.infer import parse_objective

GROUPS = ("encoder", "decoder")


def _model(args, data):
    if args.checkpoint and os.path.exists(args.checkpoint):
        return load_checkpoint(args.checkpoint)[0]
    torch.manual_seed(args.seed)
    vae = VAE(data.x_dim, 8, (256,))
    fit(vae, data, epochs=args.epochs, progress=False, seed=args.seed)
    if args.checkpoint:
        save_checkpoint(args.checkpoint, vae)
    return vae


def _weights_khat(vae, x, seed, num_samples=5000):
    """Per-point Pareto k̂ of the importance weights w = p(x, z)/q(z|x) (K = ``num_samples``):
    the median, quartiles and the fractions of points below ¼ and ½. w has a finite variance
    where k < ½ (IWAE's central limit) and w² where k < ¼, which DReG's √K rise of the
    encoder's SNR assumes (its estimator weights each draw by w̃²; Tucker et al. 2019)."""
    khat = evaluate(vae, x, num_samples=num_samples, seed=seed).values["khat"].double()
    quartiles = torch.quantile(khat, torch.tensor([0.25, 0.5, 0.75], dtype=khat.dtype))
    return {
        "num_samples": num_samples,
        "median": float(quartiles[1]),
        "quartiles": [float(quartiles[0]), float(quartiles[2])],
        "below_quarter": float((khat < 0.25).double().mean()),
        "below_half": float((khat < 0.5).double().mean()),
    }


def _refusal(spec):
    """Why make_elbo does not build ``spec`` (str), or None when it does."""
    try:
        make_elbo(*parse_objective(spec))
    except ValueError as error:
        print(f"skipping {spec}: {error}")
        return str(error)
    return None


def loglog_slope(ks, values):
    """Least-squares slope of log value on log K, and its s.e. (nan with < 3 points)."""
    pairs = [(math.log(k), math.log(v)) for k, v in zip(ks, values, strict=True) if v > 0]
    n = len(pairs)
    if n < 2:
        return math.nan, math.nan
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    slope = sum((p[0] - mx) * (p[1] - my) for p in pairs) / sxx
    if n < 3:
        return slope, math.nan
    residual = sum((p[1] - my - slope * (p[0] - mx)) ** 2 for p in pairs)
    return slope, math.sqrt(residual / (n - 2) / sxx)


def _finite(value):
    """A float for strict JSON: None for nan or inf."""
    return value if math.isfinite(value) else None


def _figure(rows, slopes):
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    for ax, group in zip(fig.subplots(1, 2), GROUPS, strict=True):
        for family in sorted({row["family"] for row in rows}):
            mine = [row for row in rows if row["family"] == family]
            ks = [row["K"] for row in mine]
            values = [row[group][0] for row in mine]
            errors = [row[group][1] or 0.0 for row in mine]
            slope = slopes.get(family, {}).get(group, [None])[0]
            label = family + (f" (slope {slope:+.2f})" if slope is not None else "")
            ax.errorbar(ks, values, yerr=errors, marker="o", capsize=2, label=label)
        ax.set(xscale="log", yscale="log", xlabel="K", title=group)
        ax.set_ylabel("median SNR |E[g]|/sd[g]")
        ax.legend(fontsize="small")
    return fig


def main(argv=None):
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    data = load_digits(binarize="dynamic")
    loaded = bool(args.checkpoint and os.path.exists(args.checkpoint))
    start = time.perf_counter()
    vae = _model(args, data)
    train_seconds = time.perf_counter() - start
    x = data.test[: args.points]
    weights = _weights_khat(vae, x, args.seed)
    print(f"Pareto k-hat of the importance weights: {weights}", flush=True)
    specs = [(family, k, f"{family}:{k}") for family in args.families for k in args.ks]
    if args.stl:
        specs.append(("stl", 1, "stl"))
    rows, skipped = [], {}
    for family, k, spec in specs:
        refusal = _refusal(spec)
        if refusal is not None:
            skipped[spec] = refusal
            continue
        start = time.perf_counter()
        summary = gradient_snr(vae, x, spec, args.draws, seed=args.seed).summary()
        row = {"family": family, "K": k, "objective": spec}
        row.update({group: [_finite(v) for v in summary[group]] for group in GROUPS})
        row["seconds"] = time.perf_counter() - start
        print(f"{spec:>10}  " + "  ".join(f"{g} {summary[g][0]:.4g}" for g in GROUPS), flush=True)
        rows.append(row)
    slopes = {}
    for family in {row["family"] for row in rows}:
        mine = [row for row in rows if row["family"] == family]
        if len(mine) < 2:
            continue
        ks = [row["K"] for row in mine]
        slopes[family] = {
            group: [_finite(v) for v in loglog_slope(ks, [row[group][0] or 0 for row in mine])]
            for group in GROUPS
        }
        print(f"{family} slopes: {slopes[family]}")
    out = {
        "settings": {
            "model": "VAE(64, z_dim=8, hidden_dims=(256,)), Bernoulli, digits (dynamic)",
            "epochs": None if loaded else args.epochs,
            "checkpoint": args.checkpoint,
            "points": args.points,
            "draws": args.draws,
            "seed": args.seed,
            "train_seconds": train_seconds,
            "snr": "median over the group's coordinates of |E[g]|/sd[g] of the gradient "
            "summed over one fixed batch of the first `points` test digits; s.e. by a "
            "delete-a-batch jackknife over 10 batches of draws",
            "slope": "least squares of log median SNR on log K, s.e. from the residuals",
        },
        "weights_khat": weights,
        "rows": rows,
        "slopes": slopes,
        "skipped": skipped,
    }
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            json.dump(out, f, indent=1, allow_nan=False)
    if args.figure and rows:
        with atomic_path(args.figure) as tmp:
            _figure(rows, slopes).savefig(tmp, format="png", dpi=110)
    return out


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 10, 30, 100, 300, 1000])
    parser.add_argument("--families", nargs="+", default=["iwae", "dreg"])
    parser.add_argument("--stl", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="the trained model: loaded if it exists, else saved")
    parser.add_argument("--out", default="benchmarks/gradient_snr.json")
    parser.add_argument("--figure", default="benchmarks/gradient_snr.png")
    return parser


if __name__ == "__main__":
    main()
