"""Normalizing-flow guides (VAE(..., encoder="iaf:2")): the distribution they return, every
objective trains them, checkpoints rebuild them, and their exact KL(q ‖ p(z|x)) on a 2-D
VAE (quadrature with the guide's own log_prob) is the gap importance sampling estimates."""

import copy
import dataclasses
import re
import warnings

import pyro
import pytest
import torch

from pyro_vae import (
    VAE,
    evaluate,
    fit,
    inference_gaps,
    load_checkpoint,
    quadrature_posterior,
    sample_posterior,
)
from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.infer.objectives import make_elbo
from pyro_vae.models.flows import FLOWS, FlowEncoder, parse_guide

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "spec, canonical",
    [("diagonal", "diagonal"), ("iaf", "iaf:2"), ("iaf:1", "iaf:1"), ("coupling:3", "coupling:3"),
     ("spline:2", "spline:2")],
)  # fmt: skip
def test_parse_guide(spec, canonical):
    assert parse_guide(spec, 4)[0] == canonical


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("z_dim", [1, 3])
def test_flow_guide_is_a_distribution_over_z_per_row(flow, z_dim, seed):
    if flow == "coupling" and z_dim == 1:
        pytest.skip("refused: see test_bad_inputs")
    torch.manual_seed(seed(0))
    encoder = FlowEncoder(16, z_dim, (12,), flow, 2)
    x = torch.rand(5, 16).round()
    q = encoder(x)
    assert (q.batch_shape, q.event_shape) == (torch.Size([5]), torch.Size([z_dim]))
    z = q.rsample((7,))
    assert z.shape == (7, 5, z_dim)
    # the cached log_prob of its own draws is the one the inverse gives
    cached, inverted = q.log_prob(z), q.log_prob(z.detach().clone())
    torch.testing.assert_close(cached, inverted, atol=1e-4, rtol=1e-5)
    # reparameterized: the transforms receive a gradient
    cached.sum().backward()
    grads = [p.grad for p in encoder.transforms.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_flow_guide_integrates_to_one(seed):
    # the density through the transforms' log-determinants is normalized: ∫ q = 1 on a grid
    torch.manual_seed(seed(1))
    for flow in FLOWS:
        encoder = FlowEncoder(16, 2, (12,), flow, 2).double()
        q = encoder(torch.rand(1, 16).round().double())
        axis = torch.linspace(-9, 9, 601, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2)
        mass = q.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
        assert abs(mass.item() - 1) < 2e-3, (flow, mass.item())


@pytest.mark.parametrize(
    "loss, alpha, k",
    [("trace", 0.0, 1), ("meanfield", 0.0, 1), ("renyi", 0.0, 5), ("pyro_renyi", 0.5, 3)],
)
def test_every_objective_trains_the_flow(loss, alpha, k, seed):
    # plain Pyro SVI: the transforms are registered with the model's parameters
    torch.manual_seed(seed(2))
    vae = VAE(16, 3, (12,), encoder="iaf:2")
    x = torch.rand(10, 16).round()
    before = [p.detach().clone() for p in vae.encoder.transforms.parameters()]
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}),
                         make_elbo(loss, alpha, k))  # fmt: skip
    losses = [svi.step(x) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    after = list(vae.encoder.transforms.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_checkpoint_rebuilds_the_flow_guide(tmp_path, seed):
    data = load_digits(binarize="static")
    torch.manual_seed(seed(3))
    vae = VAE(64, 3, (32,), encoder="coupling:2")
    fit(vae, data, epochs=1, progress=False, checkpoint=str(tmp_path / "flow.pt"), seed=seed(3))
    rebuilt, saved = load_checkpoint(tmp_path / "flow.pt")
    assert saved["model_config"]["encoder"] == "coupling:2"
    assert isinstance(rebuilt.encoder, FlowEncoder)
    x = data.test[:5]
    a = evaluate(rebuilt, x, 100, seed=seed(3)).summary()
    b = evaluate(vae.cpu().eval(), x, 100, seed=seed(3)).summary()
    assert a == b
    # the default guide is not recorded: checkpoints of diagonal models are unchanged
    assert "encoder" not in VAE(64, 3).config


@pytest.fixture(scope="module")
def flow_2d(seed):
    """A 2-D digits VAE trained with an IAF guide, 8 test points."""
    pyro.set_rng_seed(seed(10))
    data = load_digits(binarize="static")
    vae = VAE(64, z_dim=2, hidden_dims=(64,), encoder="iaf:2")
    fit(vae, data, epochs=30, progress=False, seed=seed(10))
    return vae, data.test[:8]


def test_flow_guide_gap_is_its_exact_kl(flow_2d, seed):
    # quadrature gives KL(q ‖ p(z|x)) from the flow's own log_prob on a grid; importance
    # sampling's log p̂(x) − ELBO estimates the same number
    vae, x = copy.deepcopy(flow_2d[0]).double(), flow_2d[1].double()
    exact = quadrature_posterior(vae, x)
    estimate = evaluate(vae, x, 5000, seed=seed(11))
    mean, se = estimate.summary()["gap"]
    assert exact.converged.all() and exact.kl_guide.min() > 0
    assert abs(mean - exact.kl_guide.mean().item()) < 4 * se + 1e-4, (mean, se)


def test_local_flow_approximation_gap_is_no_larger(flow_2d, seed):
    vae, x = flow_2d
    gaps = inference_gaps(vae, x, families=("diagonal", "flow"), seed=seed(12), max_steps=1500)
    assert gaps.log_px_source == "quadrature"
    s = gaps.summary()
    (flow, flow_se), (diagonal, diagonal_se) = s["elbo_local_flow"], s["elbo_local_diagonal"]
    assert flow > diagonal - 3 * (flow_se**2 + diagonal_se**2) ** 0.5, (flow, diagonal)
    # the amortized flow is split at its own family: with log p(x) exact by quadrature,
    # the approximation gap is a KL (≥ 0) and so is the inference gap
    for name in ("approximation_gap", "inference_gap"):
        mean, se = s[name]
        assert mean > -3 * se, (name, mean, se)


def test_hmc_starts_from_a_flow_guide(flow_2d, seed):
    vae, x = flow_2d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R̂ and ESS of a short run
        idata = sample_posterior(vae, x[:2], num_samples=50, warmup_steps=50, num_chains=2,
                                 seed=seed(13), progress=False)  # fmt: skip
    assert idata.posterior["z"].shape == (2, 50, 2, 2)


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_compare_guides(tmp_path, seed):
    # end to end: training, evaluation, anatomy, the HMC check, the gap split and the
    # figures (the latent map of a 2-D model reads the flow's mean from draws); 40 test
    # points keep the quadrature of the 2-D decompositions short
    full = load_digits(binarize="static")
    labels = {k: v[:40] if k == "test" else v for k, v in full.labels.items()}
    data = dataclasses.replace(full, test=full.test[:40], labels=labels)
    result = compare(data, ["trace"], guides=("diagonal", "iaf:1"), z_dim=2, hidden_dims=(16,),
                     num_samples=100, posterior_points=2, gap_families=("flow",),
                     gap_max_steps=100, epochs=2, patience=None, gap_every=None,
                     progress=False, seeds=(seed(14),))  # fmt: skip
    rows = {row.objective: row for row in result.rows}
    assert list(rows) == ["Trace_ELBO", "Trace_ELBO (iaf:1)"]
    assert rows["Trace_ELBO (iaf:1)"].guide == "iaf:1"
    assert rows["Trace_ELBO (iaf:1)"].kl_per_dim is None  # no per-dimension marginals
    assert len(rows["Trace_ELBO"].kl_per_dim) == 2
    assert isinstance(result.models["Trace_ELBO (iaf:1)"].encoder, FlowEncoder)
    assert result.meta["guides"] == ["diagonal", "iaf:1"]
    assert [row.family for row in result.gap_rows] == ["diagonal", "flow"]
    assert set(result.checks) == {"Trace_ELBO", "Trace_ELBO (iaf:1)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a 2-epoch model's HMC diagnostics
        result.write_report(tmp_path)
    assert (tmp_path / "latent_map_trace_elbo_iaf_1.png").exists() or any(
        "latent_map" in p.name and "iaf" in p.name for p in tmp_path.iterdir()
    ), sorted(p.name for p in tmp_path.iterdir())
    report = (tmp_path / "report.md").read_text()
    # surgery table: active units out of z_dim, a dash for the KL per dimension
    assert re.search(r"\| Trace_ELBO \(iaf:1\) \|[^\n]*\| \d/2 \| — \|", report), report


@CUDA
def test_flow_guide_on_cuda(seed):
    data = load_digits(binarize="static")
    torch.manual_seed(seed(15))
    vae = VAE(64, 3, (32,), encoder="iaf:2")
    fit(vae, data, epochs=1, progress=False, device="cuda", seed=seed(15))
    x = data.test[:8]
    on_gpu = evaluate(vae, x, 200, seed=seed(15), device="cuda").summary()
    assert all(torch.isfinite(torch.tensor(v[0])) for v in on_gpu.values())
    gaps = inference_gaps(vae.cuda(), x.cuda(), families=("flow",), max_steps=200,
                          num_samples=200, seed=seed(15))  # fmt: skip
    assert torch.isfinite(torch.tensor(gaps.summary()["elbo_local_flow"][0]))
