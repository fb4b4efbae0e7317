"""Write the theory page: each question users bring, answered with numbers computed now.

``write(out_dir)`` trains small models on the bundled digits (the budget is printed beside
every number), runs the package's estimators on them, and writes ``theory.md`` and its
figures into ``out_dir``. The numbers change when the code changes: nothing is pasted.
"""

import argparse
import contextlib
import importlib.util
import io
import math
import pathlib
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

import pyro_vae  # noqa: E402
from pyro_vae import TrainConfig  # noqa: E402
from pyro_vae.data import load_digits  # noqa: E402
from pyro_vae.experiments.compare import compare  # noqa: E402
from pyro_vae.experiments.report import (  # noqa: E402
    format_agreement,
    format_beta_table,
    format_markdown_table,
    sandwich_lines,
)
from pyro_vae.experiments.tables import format_gap_split  # noqa: E402
from pyro_vae.infer.evaluation import mean_difference  # noqa: E402
from pyro_vae.viz.anatomy import plot_active_units  # noqa: E402
from pyro_vae.viz.images import plot_image_grid, plot_reconstructions  # noqa: E402
from pyro_vae.viz.training import plot_gap_during_training  # noqa: E402

EPOCHS = 40
"""Training epochs of every model on this page (the main job trains 800)."""
NUM_SAMPLES = 1000
"""Importance samples per test point behind log p(x) on this page (the main job: 5000)."""
POINTS = 4
"""Test points of the guide check and the gap split on this page (the main job: 16)."""
PPCA_EPOCHS, PPCA_SAMPLES = 10, 2000
"""Guide-only epochs and importance samples of the probabilistic-PCA answer."""
_EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "plot_linear_gaussian_gap.py"


def _pm(estimate, digits=2):
    mean, se = (estimate.mean, estimate.se) if hasattr(estimate, "mean") else estimate
    return f"{mean:.{digits}f} ± {se:.{max(digits, 3)}f}"


def _first(evaluation, name, n=200):
    """(mean, s.e.) of an estimate over the first n points of an Evaluation."""
    values, ses = evaluation.values[name][:n], evaluation.std_errors[name][:n]
    return values.mean().item(), (ses.square().sum().sqrt() / len(ses)).item()


def _save(fig, out_dir, name):
    fig.savefig(out_dir / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return name


def _linear_gaussian_gap(out_dir, epochs=PPCA_EPOCHS, num_samples=PPCA_SAMPLES):
    """Exact KL(q ‖ p(z|x)) against the estimated gap on probabilistic PCA: the gallery's
    ``examples/plot_linear_gaussian_gap.py`` with this page's budget, and its figure."""
    spec = importlib.util.spec_from_file_location("plot_linear_gaussian_gap", _EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = argparse.Namespace(epochs=epochs, num_samples=num_samples, seed=0)
    with contextlib.redirect_stdout(io.StringIO()):
        rows = example.main(args)
    pyro.clear_param_store()
    return rows, _save(plt.gcf(), out_dir, "theory_ppca_gap.png")


def write(out_dir):
    """Compute every answer and write ``theory.md`` and its figures into ``out_dir``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = load_digits(binarize="dynamic")
    budget = (f"digits, z = 8, {EPOCHS} epochs, K = {NUM_SAMPLES} importance samples, "
              f"{POINTS} checked test points, seed 0")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unconverged-run notes of the short budget
        result = compare(
            data, ["trace", "iwae:5"], TrainConfig(epochs=EPOCHS, progress=False, gap_every=10),
            num_samples=NUM_SAMPLES, seeds=[0], posterior_points=POINTS, gap_max_steps=200,
            ais_bridges=50, bdmc_points=20, beta_schedules=("0", "1", "4"),
            workers=2,
        )  # fmt: skip
        torch.manual_seed(0)
        flow = pyro_vae.VAE(64, z_dim=8, encoder="iaf:2")
        pyro_vae.fit(flow, data, epochs=EPOCHS, progress=False, seed=0)
        flow_eval = pyro_vae.evaluate(flow, data.test[:200], NUM_SAMPLES, seed=0)
        flow_test = flow_eval.summary()
        diag_test = result.evaluations["Trace_ELBO"][0]
    # per point on the same 200 test points: flow guide minus diagonal guide (nats)
    flow_minus_diag = {
        name: mean_difference(flow_eval.values[name], diag_test.values[name][:200])
        for name in ("gap", "log_px")
    }
    gap_diff, gap_diff_se = flow_minus_diag["gap"]
    flow_verdict = (
        "narrows the gap" if gap_diff < -2 * gap_diff_se
        else "widens the gap" if gap_diff > 2 * gap_diff_se
        else "leaves the gap where it was, within two standard errors"
    )  # fmt: skip
    ppca, ppca_figure = _linear_gaussian_gap(out_dir)
    rows = {row.objective: row for row in result.rows}
    trace, iwae = rows["Trace_ELBO"], rows["RenyiELBO(alpha=0, K=5)"]
    beta = {row.schedule: row for row in result.beta_rows}
    vae = result.models["Trace_ELBO"]
    times = {r["label"]: r for r in result.meta["run_times"]}

    # figures
    x = data.test[:10]
    with torch.no_grad():
        recon = {label: m.likelihood_dist(m.encode(x).mean).mean
                 for label, m in result.models.items()}  # fmt: skip
        prior_samples = vae.likelihood_dist(torch.randn(20, 8)).mean
        one_z = torch.randn(1, 8)
        draws = vae.likelihood_dist(one_z.expand(8, 8)).sample()
        mean_image = vae.likelihood_dist(one_z).mean
    figs = {
        "reconstructions": _save(
            plot_reconstructions(x, recon, data.image_shape), out_dir, "theory_reconstructions.png"
        ),  # fmt: skip
        "samples": _save(
            plot_image_grid(prior_samples, data.image_shape, nrows=2),
            out_dir,
            "theory_prior_samples.png",
        ),  # fmt: skip
        "decoder": _save(
            plot_image_grid(torch.cat([mean_image, draws]), data.image_shape, nrows=1),
            out_dir,
            "theory_decoder_draws.png",
        ),  # fmt: skip
        "gap": _save(
            plot_gap_during_training(result.histories), out_dir, "theory_gap_during_training.png"
        ),  # fmt: skip
        "units": _save(
            plot_active_units(
                {s: r.activity for s, r in beta.items()}, {s: r.kl_per_dim for s, r in beta.items()}
            ),
            out_dir,
            "theory_active_units.png",
        ),  # fmt: skip
    }
    beta0, beta1, beta4 = beta["β=0"], beta["β=1"], beta["β=4"]
    first = result.histories["Trace_ELBO"]
    gaps_by_epoch = [(r["epoch"], r["gap"]) for r in first if r.get("gap") is not None]
    trend = "grew" if gaps_by_epoch[-1][1] > gaps_by_epoch[0][1] else "shrank"
    n_test = len(data.test)
    budget_here = f"*Budget: {EPOCHS} epochs, {n_test} test points, K = {NUM_SAMPLES}.*"
    ppca_lines = "\n".join(
        f"| {epoch} | {exact:.3f} | {_pm((gap, se), 3)} |" for epoch, exact, gap, se in ppca
    )
    agreement = {a.objective: a for a in result.agreement}
    check_s = times["Trace_ELBO"].get("check_s", math.nan)
    evaluate_s = times["Trace_ELBO"].get("evaluate_s", math.nan)
    gaps = {g.objective: g for g in result.gap_rows}
    g = gaps["Trace_ELBO"].estimates
    page = f"""# Theory, measured

Every number and figure on this page was computed while these docs were built, by
`docs/_scripts/theory.py`, from models trained for the occasion on a small budget:
**{budget}** (the main job, `pyro-vae compare`, trains 800 epochs and uses K = 5000 on
16 points; its numbers are in the README). The page took {{elapsed:.0f}} s to compute.
Nats per test point, ± one Monte-Carlo standard error.

{format_markdown_table(result.rows, NUM_SAMPLES)}

## 1. Why maximise log p(x) and not the reconstruction term alone?

p(x) here is the model's marginal p_θ(x) = ∫ p_θ(x|z) p(z) dz, not the data distribution.
Trained on the reconstruction term alone (β = 0), the model reconstructs
{_pm(beta0.test["reconstruction"])} against {_pm(beta1.test["reconstruction"])} with the
ELBO (β = 1), but its KL(q ‖ p(z)) is {_pm(beta0.test["kl"])} against
{_pm(beta1.test["kl"])}, and its log p(x) {_pm(beta0.test["log_px"])} against
{_pm(beta1.test["log_px"])}: the prior no longer describes where the codes are, so samples
from p(z) decode badly. {budget_here}

![Test digits (top) and their reconstructions through q(z|x)]({figs["reconstructions"]})

## 2. How far below log p(x) is the ELBO, and does the gap shrink in training?

For Trace_ELBO the gap log p(x) − ELBO is {_pm(trace.test["gap"])}, for the IWAE-trained
model {_pm(iwae.test["gap"])}. During training (100 validation points, every 10 epochs)
the Trace_ELBO gap went {" → ".join(f"{gap:.2f}" for _, gap in gaps_by_epoch)}: it {trend}
while the model learned. {budget_here}

![log p(x), ELBO and gap during training]({figs["gap"]})

## 3. Is the gap really KL(q(z|x) ‖ p(z|x))?

On probabilistic PCA everything is exact. Training only the guide from a poor start
(the gallery's "exact gap" example; *budget: {PPCA_EPOCHS} epochs of the guide, its 500 test
points, K = {PPCA_SAMPLES}*):

| epoch | exact KL(q ‖ p(z\\|x)) | estimated log p(x) − ELBO |
| ---: | ---: | ---: |
{ppca_lines}

![The exact KL against the estimated gap, ± 2 s.e.]({ppca_figure})

## 4. Does q end up close to the prior or to the posterior?

KL(q(z|x) ‖ p(z)) is {_pm(trace.test["kl"])} nats, KL(q(z|x) ‖ p(z|x)) (the gap)
{_pm(trace.test["gap"])}: the guide sits far closer to the posterior than to the prior.
ELBO surgery splits the average KL term into the mutual information I_q(x; z)
{_pm(trace.surgery["mutual_information"])} and KL(q(z) ‖ p(z)) of the aggregate posterior
{_pm(trace.surgery["marginal_kl"])} (Hoffman & Johnson 2016). {budget_here}

## 5. Could log p(x) improve while the KL to the posterior gets worse?

Yes: θ and φ move together. The IWAE-trained model has the higher log p(x)
({_pm(iwae.test["log_px"])} against {_pm(trace.test["log_px"])}) and the larger gap
({_pm(iwae.test["gap"])} against {_pm(trace.test["gap"])}). {budget_here}

## 6. Is one sample per data point enough?

Trace_ELBO (1 sample) trained in {trace.train_time_s:.0f} s, the IWAE bound with K = 5 in
{iwae.train_time_s:.0f} s; test log p(x) {_pm(trace.test["log_px"])} against
{_pm(iwae.test["log_px"])}, ELBO {_pm(trace.test["elbo"])} against {_pm(iwae.test["elbo"])}.
{budget_here}

## 7. Sample z from the prior or from the encoder?

From the encoder to reconstruct a given x (question 1's figure); from the prior to make new
data:

![Decoder means of z ~ p(z)]({figs["samples"]})

## 8. Is the decoder a function or a distribution?

A distribution: for one z, its mean (left) and eight draws x ~ p_θ(x|z):

![Decoder mean and eight draws for one z]({figs["decoder"]})

## 9. Why not HMC for p(z|x)? When is it the better tool?

On {POINTS} test points the guide check (batched HMC, 4 chains × 1000 draws) took
{check_s:.1f} s against {evaluate_s:.1f} s for the whole test evaluation of 359 points by the
guide (*{EPOCHS} epochs*). Agreement of the guide with HMC (medians over the points):

{format_agreement(list(agreement.values()))}

## 10. What does amortizing cost?

On the {POINTS} checked points Trace_ELBO's gap {_pm(g["inference_gap"])} splits into an
approximation gap {_pm(g["approximation_gap"])} and an amortization gap
{_pm(g["amortization_gap"])} (Cremer et al. 2018; *{EPOCHS} epochs, per-point fits capped at
200 steps, AIS with 50 bridges*):

{format_gap_split(result.gap_rows)}

{chr(10).join("- " + line for line in sandwich_lines(result.gap_rows, result.sandwich))}

## 11. What does β do; what is posterior collapse?

{format_beta_table(result.beta_rows)}

Active units: {beta0.num_active} of 8 at β = 0, {beta1.num_active} at β = 1,
{beta4.num_active} at β = 4 (a unit is active when its activity Cov_x E_q[z_d] exceeds
0.01; Burda et al. 2016). {budget_here}

![Activity and KL per latent dimension under each β]({figs["units"]})

## 12. Would a more flexible q (a normalizing flow) close the gap?

The same model trained with an IAF guide (`encoder="iaf:2"`), on the first 200 test points
(*{EPOCHS} epochs, K = {NUM_SAMPLES}*): gap {_pm(flow_test["gap"])} against the diagonal
guide's {_pm(_first(diag_test, "gap"))}, log p(x) {_pm(flow_test["log_px"])} against
{_pm(_first(diag_test, "log_px"))}. Per point, flow minus diagonal: gap
{_pm(flow_minus_diag["gap"])}, log p(x) {_pm(flow_minus_diag["log_px"])} nats (± the s.e.
of the mean difference over the points): here the flow guide {flow_verdict}.
"""
    page = page.replace("{elapsed:.0f}", f"{time.perf_counter() - start:.0f}")
    tmp = out_dir / "theory.md.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_dir / "theory.md")
    return out_dir / "theory.md"
