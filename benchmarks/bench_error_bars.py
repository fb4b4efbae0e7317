"""Are evaluate's error bars right? Probabilistic PCA with the best diagonal guide.

    python benchmarks/bench_error_bars.py --out benchmarks/error_bars.json

For each posterior correlation ρ in ``--correlations``, builds probabilistic PCA (x_dim 10,
z_dim 2, σ = 0.5, columns of W of squared norm 4 at the angle that gives p(z|x) the
correlation ρ) with its best diagonal Gaussian guide, q = N(posterior mean, diag 1/Λ_ii)
for the posterior precision Λ (the q that minimizes KL(q ‖ p(z|x)): what a per-point
``AutoNormal`` or an ideal amortized diagonal encoder reaches). Its importance weights
have the Pareto tail k = |ρ| exactly (E_q w^a is finite for a < 1/|ρ|), so their
variance is infinite from |ρ| = 0.5. Then ``--seeds`` evaluations (K = ``--num-samples``)
of ``--points`` data points drawn from the model, against the closed forms, give for
log p(x) and the gap:

- ``spread_over_se``: the s.d. of the estimates over seeds over their rms reported s.e.
  (pooled over points, as ``tests/test_evaluation.py``'s ``sd_over_se``);
- ``rms_z``: the root mean square of (estimate − exact) / reported s.e.;
- ``bias`` with its standard error, against the delta method's −se²/2;
- the mean ESS and k̂, the share of points flagged (k̂ ≥ 0.5, ``se_unreliable``) and
  the rms z of the points *not* flagged, and of the means over the points of each
  evaluation (the summary) not flagged (no point flagged).

Also the ELBO of a Student-t guide (1.5 degrees of freedom, at the posterior mean with
the posterior's s.d. as scale): an infinite KL(q ‖ p(z)), so an ELBO of −∞, which the
draws report as a finite mean with a finite s.e.; the k̂ of the ELBO's terms flags it.
One torch thread, float64. Writes JSON atomically.
"""

import argparse
import json
import math
import platform

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae import LinearGaussianVAE, evaluate
from pyro_vae._io import atomic_path
from pyro_vae.infer.diagnostics import KHAT_GOOD, KHAT_UNRELIABLE

NORM2, NOISE, X_DIM = 4.0, 0.5, 10


def _precision_factor(vae):
    """M = WᵀW + σ²I and σ²: p(z|x) has precision M/σ² (Tipping & Bishop 1999, eq. 6)."""
    weight, noise_var = vae.weight.detach().double(), vae.noise_scale.detach().double() ** 2
    eye = torch.eye(weight.shape[1], dtype=torch.float64)
    return weight.T @ weight + noise_var * eye, noise_var


def correlated_ppca(rho, points, seed):
    """pPCA whose posterior has correlation rho, its best diagonal guide, and data."""
    gen = torch.Generator().manual_seed(seed)
    vae = LinearGaussianVAE(X_DIM, 2, noise_scale=NOISE).double()
    cos = -rho * (NORM2 + NOISE**2) / NORM2  # WᵀW + σ²I has correlation −rho
    basis, _ = torch.linalg.qr(torch.randn(X_DIM, 2, generator=gen, dtype=torch.float64))
    second = cos * basis[:, 0] + math.sqrt(1 - cos**2) * basis[:, 1]
    weight = torch.stack([basis[:, 0], second], 1) * math.sqrt(NORM2)
    bias = torch.randn(X_DIM, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        vae.weight.copy_(weight)
        vae.bias.copy_(bias)
        precision_factor, noise_var = _precision_factor(vae)
        proj = torch.linalg.inv(precision_factor) @ weight.T
        vae.guide_loc.weight.copy_(proj)
        vae.guide_loc.bias.copy_(-proj @ bias)
        vae.guide_log_scale.copy_(0.5 * (noise_var / precision_factor.diagonal()).log())
    z = torch.randn(points, 2, generator=gen, dtype=torch.float64)
    x = z @ weight.T + bias + NOISE * torch.randn(points, X_DIM, generator=gen, dtype=torch.float64)
    return vae, x


def _rms(values):
    return float(values.square().mean().sqrt()) if values.numel() else math.nan


def measure(rho, args):
    """The statistics of the module docstring for one posterior correlation."""
    vae, x = correlated_ppca(rho, args.points, args.data_seed)
    cov = vae.exact_posterior(x).covariance_matrix[0]
    runs = [evaluate(vae, x, args.num_samples, ks=(), seed=s) for s in range(args.seeds)]
    values = {k: torch.stack([r.values[k] for r in runs]) for k in ("log_px", "gap", "ess", "khat")}
    ses = {k: torch.stack([r.std_errors[k] for r in runs]) for k in ("log_px", "gap")}
    exact = {"log_px": vae.exact_log_likelihood(x), "gap": vae.exact_posterior_kl(x)}
    row = {
        "correlation": float(cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt()),
        "exact_gap": float(exact["gap"].mean()),
        "ess": float(values["ess"].mean()),
        "khat_mean": float(values["khat"].mean()),
        "share_khat_above_0.7": float((values["khat"] > KHAT_UNRELIABLE).double().mean()),
    }
    for name in ("log_px", "gap"):
        flagged = torch.stack([r.se_unreliable(name) for r in runs])
        error, se = values[name] - exact[name], ses[name]
        z = error / se
        spread = values[name].var(0).sum() / se.square().mean(0).sum()
        bias_se = error.std() / math.sqrt(error.numel())
        mean_error = error.mean(1)
        mean_se = se.square().sum(1).sqrt() / se.shape[1]
        summary_flagged = flagged.any(1)
        row[name] = {
            "spread_over_se": float(spread.sqrt()),
            "rms_z": _rms(z),
            "bias": float(error.mean()),
            "bias_se": float(bias_se),
            "delta_method_bias": float(-se.square().mean() / 2),
            "share_flagged": float(flagged.double().mean()),
            "rms_z_unflagged": _rms(z[~flagged]),
            "unflagged": int((~flagged).sum()),
            "share_summaries_flagged": float(summary_flagged.double().mean()),
            "rms_z_unflagged_summaries": _rms((mean_error / mean_se)[~summary_flagged]),
        }
    return row


class StudentTEncoder(nn.Module):
    """q(z|x) = Student-t(ν) at the posterior mean, with the posterior's s.d. as scale."""

    def __init__(self, vae, df):
        super().__init__()
        precision_factor, noise_var = _precision_factor(vae)
        inverse = torch.linalg.inv(precision_factor)
        self.df = df
        self.register_buffer("proj", inverse @ vae.weight.detach().double().T)
        self.register_buffer("offset", vae.bias.detach().double())
        self.register_buffer("scale", (noise_var * inverse.diagonal()).sqrt())

    def forward(self, x):
        loc = (x - self.offset) @ self.proj.T
        return dist.StudentT(self.df, loc, self.scale.expand(loc.shape)).to_event(1)


def student_t_elbo(args, df=1.5):
    """The ELBO's summary under a Student-t guide with an infinite KL."""
    vae, x = correlated_ppca(-0.69, args.points, args.data_seed)
    vae.encoder = StudentTEncoder(vae, df)
    result = evaluate(vae, x, args.num_samples, ks=(), seed=0)
    summary = result.summary()
    return {
        "df": df,
        "elbo": summary["elbo"],
        "kl": summary["kl"],
        "log_px_exact": float(vae.exact_log_likelihood(x).mean()),
        "khat_mean": summary["khat"][0],
        "khat_elbo_mean": summary["khat_elbo"][0],
        "se_unreliable": summary.se_unreliable,
    }


def main(args):
    torch.set_num_threads(1)
    out = {
        "setting": f"pPCA x_dim {X_DIM}, z_dim 2, sigma {NOISE}, best diagonal guide, float64",
        "points": args.points,
        "seeds": args.seeds,
        "num_samples": args.num_samples,
        "data_seed": args.data_seed,
        "khat_good": KHAT_GOOD,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rows": [],
    }
    for rho in args.correlations:
        row = measure(rho, args)
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    out["student_t"] = student_t_elbo(args)
    print(json.dumps(out["student_t"]), flush=True)
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--correlations", type=float, nargs="+", default=[-0.3, -0.45, -0.55, -0.69, -0.84, -0.94]
    )
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out")
    main(parser.parse_args())
