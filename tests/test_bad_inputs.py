"""Bad inputs a Pyro user makes, and the one line each gets: one table, one test.

Each row of :data:`CASES` is what the user wrote (``call``), what it should say
(``expect``, a part of the message's first line) and the exception's type. The docs'
bad-input page is generated from this table (run each ``run`` and print its message),
so every row there is backed by this test. Pyro appends the trace's shapes on the lines
after an error raised inside a traced model or guide; the package's message is the
first line.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoIAFNormal, AutoNormal
from torch import nn

from pyro_vae import (
    VAE,
    TrainConfig,
    ais,
    bdmc,
    evaluate,
    fit,
    from_pyro,
    inference_gaps,
    load_checkpoint,
    sample_guide,
)
from pyro_vae.cli import main
from pyro_vae.data import load_dataset, load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.infer.objectives import parse_objective


def _vae(**kwargs):
    torch.manual_seed(0)
    return VAE(64, z_dim=2, hidden_dims=(8,), **kwargs)


def _x(rows=6):
    return (torch.rand(rows, 64, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def _with_nan():
    x = _x()
    x[2, 5] = float("nan")
    return x


def _missing_cuda_device():
    """'cuda' where PyTorch sees no GPU, else the index one past the last GPU."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def _pair(model, guide):
    """An object with ``model`` and ``guide``, as a user wraps an autoguide."""
    return type("Pair", (), {"model": staticmethod(model), "guide": staticmethod(guide)})()


def _svi_step(x):
    vae = _vae()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    return svi.step(x)


def _autoguide(cls, rows=6, **kwargs):
    vae = _vae()
    pyro.clear_param_store()
    guide = cls(vae.model, **kwargs)
    guide(_x(rows))
    return _pair(vae.model, guide)


class _MixtureOfDiagNormalsEncoder(nn.Module):
    """q(z|x) as Pyro's MixtureOfDiagNormals of two components (z_dim 2)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(64, 10)

    def forward(self, x):
        out = self.net(x)
        locs, log_scales = out[:, :8].view(-1, 2, 2, 2).unbind(1)
        return dist.MixtureOfDiagNormals(locs, log_scales.exp(), out[:, 8:])


def _holder():
    """The VAE's model and guide held by a plain object that says x_dim."""
    vae = _vae()
    return type("Holder", (), {"model": staticmethod(vae.model),
                               "guide": staticmethod(vae.guide), "x_dim": 64})()  # fmt: skip


def _command_line(argv):
    """``pyro-vae`` run with argv; argparse's usage error (printed after "error:" before
    exiting with status 2) raised as the ArgumentError it reports."""

    def error(parser, message):
        raise argparse.ArgumentError(None, message)

    with mock.patch.object(argparse.ArgumentParser, "error", error):
        return main(argv)


def _store_of_another_architecture(tmp_path):
    pyro.clear_param_store()
    small = VAE(64, z_dim=2, hidden_dims=(8,), name="saved")
    pyro.module("saved.encoder", small.encoder)
    pyro.module("saved.decoder", small.decoder)
    path = tmp_path / "store.pt"
    pyro.get_param_store().save(path)
    pyro.clear_param_store()
    pyro.get_param_store().load(path)
    return evaluate(VAE(64, z_dim=2, hidden_dims=(16,), name="saved"), _x(), num_samples=10)


@dataclass
class Case:
    call: str  # what the user wrote
    run: Callable  # of tmp_path
    error: type
    expect: str  # a part of the first line of the message


CASES = [
    Case("VAE(64, hidden_dims='256')", lambda p: VAE(64, hidden_dims="256"), ValueError,
         "Expected hidden_dims to be a positive integer or a non-empty sequence"),
    Case("VAE(64, hidden_dims=(256, 0))", lambda p: VAE(64, hidden_dims=(256, 0)), ValueError,
         "Expected hidden_dims"),
    Case("VAE(64, likelihood='poisson')", lambda p: VAE(64, likelihood="poisson"), ValueError,
         "Expected likelihood in"),
    Case("VAE(64, name='')", lambda p: VAE(64, name=""), ValueError,
         "Expected name to be None or a non-empty string"),
    Case("svi.step(x) with a NaN in x", lambda p: _svi_step(_with_nan()), ValueError,
         "Expected x to hold finite values but it holds 1 NaN or inf value(s), the first "
         "in row 2"),
    Case("svi.step(x) with grey levels and a Bernoulli likelihood",
         lambda p: _svi_step(_x() * 0.5), ValueError, "Expected binary x (0 or 1)"),
    Case("evaluate(vae, x) with a NaN in x", lambda p: evaluate(_vae(), _with_nan()),
         ValueError, "Expected x to hold finite values"),
    Case("evaluate(vae, x[:, :10])", lambda p: evaluate(_vae(), _x()[:, :10]), ValueError,
         "Expected x of width x_dim=64 but got width 10"),
    Case("evaluate(vae, x[0])", lambda p: evaluate(_vae(), _x()[0]), ValueError,
         "Expected x of shape (num_data, 64)"),
    Case("evaluate(vae, x, num_samples=1)", lambda p: evaluate(_vae(), _x(), num_samples=1),
         ValueError, "Expected num_samples to be an integer >= 2"),
    Case("evaluate(vae, x, ks=(0, 5))", lambda p: evaluate(_vae(), _x(), 10, ks=(0, 5)),
         ValueError, "Expected ks to be a sequence of integers in [1, num_samples=10]"),
    Case("evaluate(vae, x, seed=0.5)", lambda p: evaluate(_vae(), _x(), 10, seed=0.5),
         ValueError, "Expected seed to be an integer or None"),
    Case("evaluate(vae, x, device='tpu')", lambda p: evaluate(_vae(), _x(), 10, device="tpu"),
         ValueError, "device"),
    Case("evaluate(vae, x, device='cuda') on a machine without a GPU",
         lambda p: evaluate(_vae(), _x(), 10, device=_missing_cuda_device()), ValueError,
         "CUDA device(s)"),
    Case("evaluate(vae.half(), x)", lambda p: evaluate(_vae().half(), _x(), 10), ValueError,
         "Expected the parameters of vae in float32 or float64"),
    Case("evaluate(vae, x) with x of dtype torch.complex64",
         lambda p: evaluate(_vae(), _x().to(torch.complex64), 10), ValueError,
         "Expected x to be real-valued (a float, integer or bool dtype) but got "
         "torch.complex64"),
    Case("evaluate(vae, x.numpy())", lambda p: evaluate(_vae(), _x().numpy(), 10), ValueError,
         "Expected x to be a torch.Tensor but got ndarray"),
    Case("evaluate(pair) with the guide passed as the model",
         lambda p: evaluate(_pair(_vae().guide, _vae().guide), _x(), 10), ValueError,
         "was the guide passed as the model?"),
    Case("evaluate(pair) with the model passed as the guide",
         lambda p: evaluate(_pair(_vae().model, _vae().model), _x(), 10), ValueError,
         "was the model passed as the guide?"),
    Case("evaluate with AutoDiagonalNormal(vae.model) as the guide",
         lambda p: evaluate(_autoguide(AutoDiagonalNormal), _x(), 10), ValueError,
         "the guide draws one latent for the whole batch"),
    Case("evaluate with AutoIAFNormal(vae.model) as the guide",
         lambda p: evaluate(_autoguide(AutoIAFNormal, hidden_dim=[32]), _x(), 10),
         ValueError, "AutoNormal(vae.model, create_plates=vae.create_plates)"),
    Case("evaluate 60 points with AutoNormal(vae.model) (no create_plates)",
         lambda p: evaluate(_autoguide(AutoNormal, rows=60), _x(60), 5000), ValueError,
         "the guide draws 60 rows (one per data point it was built on) where this pass "
         "holds 26 rows of x"),
    Case("fit(vae, x, 'trace')", lambda p: fit(_vae(), _x(), "trace"), TypeError,
         "Expected config to be a TrainConfig or None"),
    Case("TrainConfig(patience=True)", lambda p: TrainConfig(patience=True).validate(),
         ValueError, "Expected patience to be"),
    Case("fit(vae, x, beta=-1)", lambda p: fit(_vae(), _x(), beta=-1.0, progress=False),
         ValueError, "beta"),
    Case("parse_objective('elbo:5')", lambda p: parse_objective("elbo:5"), ValueError,
         "objective"),
    Case("a param store saved from another architecture, loaded under the model's name",
         _store_of_another_architecture, ValueError, "of shape (16, 64), as this VAE has, "
         "but it holds (8, 64): the store was saved from another architecture"),
    Case("load_checkpoint('notes.txt')",
         lambda p: (p / "notes.txt").write_text("hi") and load_checkpoint(p / "notes.txt"),
         ValueError, "not a PyTorch zip file"),
    Case("load_dataset('mnist:/no/such/folder')",
         lambda p: load_dataset("mnist:/no/such/folder"), FileNotFoundError,
         "t10k-images-idx3-ubyte"),
    Case("load_dataset('fashion-mnist:/no/such/folder')",
         lambda p: load_dataset("fashion-mnist:/no/such/folder"), FileNotFoundError,
         "install it with 'apt-get install dataset-fashion-mnist'"),
    Case("VAE(64, encoder='planar:2')", lambda p: VAE(64, encoder="planar:2"), ValueError,
         "Expected a guide spec, diagonal (a diagonal Gaussian, the default) or FLOW[:K] with "
         "FLOW in iaf, coupling, spline"),
    Case("VAE(64, encoder='iaf:0')", lambda p: VAE(64, encoder="iaf:0"), ValueError,
         "but got 'iaf:0'"),
    Case("VAE(64, z_dim=1, encoder='coupling:2')",
         lambda p: VAE(64, z_dim=1, encoder="coupling:2"), ValueError,
         "Expected z_dim >= 2 for the guide 'coupling:2'"),
    Case("VAE(64, encoder=3)", lambda p: VAE(64, encoder=3), ValueError,
         "Expected encoder to be a guide spec (str) or a torch.nn.Module"),
    Case("evaluate(VAE(64, encoder='iaf:2'), x[:, :10])",
         lambda p: evaluate(_vae(encoder="iaf:2"), _x()[:, :10]), ValueError,
         "Expected x of width x_dim=64 but got width 10"),
    Case("inference_gaps(vae, x, families=('iaf',))",
         lambda p: inference_gaps(_vae(), _x(), families=("iaf",)), ValueError,
         "Expected family in ('diagonal', 'flow') but got 'iaf'"),
    Case("compare(digits, guides=('iaf', 'iaf:2'))",
         lambda p: compare(load_digits(), ["trace"], guides=("iaf", "iaf:2")), ValueError,
         "Expected distinct guides but got ['iaf', 'iaf:2']"),
    Case("compare(digits, guides='iaf:2')",
         lambda p: compare(load_digits(), ["trace"], guides="iaf:2"), ValueError,
         "Expected guides to be a sequence of guide specs but got 'iaf:2'"),
    Case("ais(vae, x, start='posterior')", lambda p: ais(_vae(), _x(), start="posterior"),
         ValueError, "Expected start in ('guide', 'prior') but got 'posterior'"),
    Case("ais(vae, x, target_accept=65)", lambda p: ais(_vae(), _x(), target_accept=65),
         ValueError, "target_accept"),
    Case("bdmc(vae, num_points=0)", lambda p: bdmc(_vae(), num_points=0), ValueError,
         "Expected num_points to be an integer > 0 but got 0"),
    Case("compare(digits, ais_bridges=-1)",
         lambda p: compare(load_digits(), ["trace"], ais_bridges=-1), ValueError,
         "Expected ais_bridges to be an integer >= 0 but got -1"),
    Case("compare(digits, posterior_points=1000)",
         lambda p: compare(load_digits(), ["trace"], posterior_points=1000), ValueError,
         "Expected posterior_points <= 359, the size of the test split, but got 1000"),
    Case("ais(vae, x) with an encoder returning pyro's MixtureOfDiagNormals",
         lambda p: ais(_vae(encoder=_MixtureOfDiagNormalsEncoder()), _x()), ValueError,
         "but got Pyro's MixtureOfDiagNormals, which draws the wrong components in batch "
         "mode (a Pyro bug); return pyro.distributions.MixtureSameFamily"),
    Case("inference_gaps(pair, x) with pair holding vae.model and an AutoNormal",
         lambda p: inference_gaps(_autoguide(AutoNormal, create_plates=_vae().create_plates),
                                  _x()),
         ValueError, "Expected vae to be a pyro_vae BaseVAE (its prior and likelihood_dist "
         "give the per-point fits) but got Pair; for another guide of the VAE's model pass "
         "it apart: inference_gaps(vae, x, guide=AutoNormal("),
    Case("from_pyro(vae)", lambda p: from_pyro(_vae()), ValueError,
         "Expected mcmc to be a finished pyro.infer.MCMC run"),
    Case("sample_guide(holder, x) with a holder of model, guide and x_dim",
         lambda p: sample_guide(_holder(), _x()), ValueError,
         "Expected vae to be a torch.nn.Module with parameters (they give x its dtype and "
         "device) but got Holder"),
    Case("VAE(64, encoder='iaf:2').encode(x).mean",
         lambda p: _vae(encoder="iaf:2").encode(_x()).mean, NotImplementedError,
         "A flow guide's q(z|x) has no closed-form mean (a TransformedDistribution): "
         "estimate it from draws, q.sample((1000,)).mean(0)"),
    Case("pyro-vae ais run.pt --num-samples 1",
         lambda p: _command_line(["ais", str(p / "run.pt"), "--num-samples", "1"]),
         argparse.ArgumentError, "argument --num-samples: expected 0 (no importance-sampling "
         "estimate) or K >= 2"),
    Case("fit(vae, x, beta='warmup:0')",
         lambda p: fit(_vae(), _x(), beta="warmup:0", progress=False), ValueError,
         "Expected EPOCHS of the β schedule spec 'warmup:0' (the epochs β takes to go from "
         "START to END) to be an integer >= 1 but got 0; e.g. 'warmup:10'"),
    Case("fit(vae, x, loss=Trace_ELBO())",
         lambda p: fit(_vae(), _x(), loss=Trace_ELBO(), progress=False), ValueError,
         "but got a Trace_ELBO object; the package builds the ELBO itself: pass loss='trace', "
         "or step your own ELBO with pyro.infer.SVI"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.call)
def test_bad_input_gets_one_line_that_names_it(case, tmp_path):
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    first = str(info.value).strip().splitlines()[0]
    assert case.expect in first, first


def test_hidden_dims_accepts_one_int():
    assert VAE(64, hidden_dims=256).hidden_dims == (256,)
    assert (
        VAE(64, hidden_dims=256).encoder.state_dict().keys() == VAE(64).encoder.state_dict().keys()
    )


def test_the_table_is_long_enough_for_the_docs():
    assert len(CASES) >= 25
