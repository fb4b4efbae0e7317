"""Devices and precision: tensors follow the parameters; bad devices and dtypes fail early."""

import pyro
import pytest
import torch
from pyro import poutine

from pyro_vae import VAE, LinearGaussianVAE, evaluate, fit
from pyro_vae._device import check_device, default_device
from pyro_vae.data import make_linear_gaussian
from pyro_vae.infer.posterior_checks import sample_guide

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tensors(site):
    """The tensors a trace site holds: its value, log-density and distribution's."""
    fn = site["fn"]
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    found = [site["value"]] + [v for v in vars(fn).values() if isinstance(v, torch.Tensor)]
    if torch.is_tensor(site.get("log_prob")):
        found.append(site["log_prob"])
    return found


@pytest.mark.parametrize("make", [lambda: VAE(12, z_dim=3), lambda: LinearGaussianVAE(12, 3)])
def test_every_tensor_the_model_and_guide_create_follows_the_parameters(make):
    # On the meta device no value is ever computed: a tensor created without the
    # parameters' device (torch.zeros(...) in the model) would land on the CPU.
    vae = make().to("meta")
    x = torch.zeros(5, 12, device="meta")
    with pyro.validation_enabled(False):
        guide = poutine.trace(vae.guide).get_trace(x, num_data=50)
        model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x, num_data=50)
        model.compute_log_prob()
        prior = poutine.trace(vae.model).get_trace(batch_size=4)
    sites = [
        site
        for trace in (guide, model, prior)
        for site in trace.nodes.values()
        if site["type"] == "sample"
    ]
    assert {site["name"] for site in sites} >= {"z", "x", "data"}
    devices = {t.device.type for site in sites for t in _tensors(site)}
    assert devices == {"meta"}


def test_check_device():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert check_device(None) == torch.device(default_device())
    with pytest.raises(ValueError, match="device to be 'cpu', 'cuda'.*got 'tpu0'"):
        check_device("tpu0")
    with pytest.raises(ValueError, match="device to be .* got 3"):
        check_device(3)
    if not torch.cuda.is_available():
        assert default_device() == "cpu"
        with pytest.raises(ValueError, match=r"device='cpu' on this machine .*got 'cuda'"):
            check_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_a_gpu_fails_before_any_work(tmp_path):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = torch.zeros(20, 64)
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match="device='cpu' on this machine"):
        fit(vae, x, epochs=1, device="cuda", progress=False, checkpoint=tmp_path / "c.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="device='cpu' on this machine"):
        evaluate(vae, x, 100, device="cuda")
    with pytest.raises(ValueError, match="device='cpu' on this machine"):
        sample_guide(vae, x[:2], 10, device="cuda")


def test_half_precision_is_refused():
    vae = VAE(64, z_dim=2, hidden_dims=(8,)).half()
    x = torch.zeros(20, 64)
    with pytest.raises(ValueError, match="float32 or float64 .* got torch.float16"):
        fit(vae, x, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="float32 or float64 .* got torch.float16"):
        evaluate(vae, x, 100, device="cpu")


def test_float64_gives_the_closed_form_to_double_precision(seed):
    # With q(z|x) = p(z|x) every importance weight equals p(x): the estimate is exact up
    # to rounding. In float32 the rounding of log w (about 10 nats per point, 6 pixels)
    # is ~1e-6 nats; in float64 ~1e-14. 1e-10 separates them by four orders.
    data = make_linear_gaussian(200, x_dim=6, z_dim=2, noise_scale=0.5, seed=seed(1))
    vae = LinearGaussianVAE(6, 2).double().fit_maximum_likelihood(data.x.double())
    vae.set_guide_to_posterior()
    x = data.x[:50].double()
    result = evaluate(vae, x, 100, ks=(1, 5), device="cpu", seed=seed(0))
    exact = vae.exact_log_likelihood(x)
    assert result.values["log_px"].dtype == torch.float64
    assert (result.values["log_px"] - exact).abs().max().item() < 1e-10
    single = LinearGaussianVAE(6, 2).fit_maximum_likelihood(data.x)
    single.set_guide_to_posterior()
    error = (
        evaluate(single, data.x[:50], 100, ks=(1, 5), seed=seed(0)).values["log_px"] - exact
    ).abs()
    assert error.max().item() > 1e-10  # float32 cannot get there: the check can fail
    # training in float64 keeps float64
    run = fit(vae, data.x, epochs=2, batch_size=50, progress=False, device="cpu", seed=seed(0))
    assert next(vae.parameters()).dtype == torch.float64
    assert run.history[-1]["train_loss"] == pytest.approx(-exact.mean().item(), abs=0.5)


def test_a_float32_dataset_trains_a_float64_model(monkeypatch, seed):
    # The epoch's redrawn data are cast to the model's dtype once, before the steps
    # (not by every call of model and guide).
    from pyro_vae.data import load_digits
    from pyro_vae.train.training import Trainer

    seen = []
    step = Trainer._loss_and_grads

    def spy(self, xb, *args):
        seen.append(xb.dtype)
        return step(self, xb, *args)

    monkeypatch.setattr(Trainer, "_loss_and_grads", spy)
    data = load_digits(binarize="dynamic")
    vae = VAE(64, z_dim=2, hidden_dims=(8,)).double()
    run = fit(vae, data, epochs=1, progress=False, device="cpu", validation=False, seed=seed(0))
    assert next(vae.parameters()).dtype == torch.float64
    assert set(seen) == {torch.float64}
    assert run.history[0]["train_loss"] > 0


@CUDA
def test_fit_evaluate_and_sample_on_cuda(seed):
    x = torch.bernoulli(torch.full((60, 64), 0.3))
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    fit(vae, x, epochs=2, batch_size=20, progress=False, device="cuda", seed=seed(0))
    assert next(vae.parameters()).device.type == "cuda"
    result = evaluate(vae, x, 200, ks=(5,), device="cuda", seed=seed(0))
    assert result.values["log_px"].device.type == "cuda"
    assert torch.isfinite(result.values["log_px"]).all()
    idata = sample_guide(vae, x[:3], 20, device="cuda", seed=seed(0))
    assert idata.posterior["z"].shape == (1, 20, 3, 2)
