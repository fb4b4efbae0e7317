"""Devices and precision: tensors follow the parameters; bad devices and dtypes fail early."""

import json

import pyro
import pytest
import torch
from pyro import poutine

from pyro_vae import (
    VAE,
    LinearGaussianVAE,
    ais,
    bdmc,
    evaluate,
    fit,
    fit_local_guides,
    inference_gaps,
    quadrature_posterior,
    sample_posterior,
)
from pyro_vae._device import check_device, default_device, model_device, on_device
from pyro_vae.data import make_linear_gaussian
from pyro_vae.experiments.guide_check import check_guide
from pyro_vae.infer import active_units, elbo_decompositions, elbo_surgery
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


# ---------------------------------------------------------------- one device rule
# The tensors decide: device=None runs where the model's parameters are, an explicit
# device moves the model, and only the entry points (fit, compare, the CLI) choose one.


def _small_vae():
    torch.manual_seed(0)
    return VAE(12, z_dim=2, hidden_dims=(8,))


def _binary(rows):
    return torch.bernoulli(torch.full((rows, 12), 0.3), generator=torch.Generator().manual_seed(1))


_ESTIMATORS = {
    "evaluate": lambda vae, x: evaluate(vae, x, 20, ks=(5,)),
    "sample_posterior": lambda vae, x: sample_posterior(
        vae, x[:2], 5, 5, 2, posterior_predictive=False
    ),
    "sample_guide": lambda vae, x: sample_guide(vae, x[:2], 5),
    "check_guide": lambda vae, x: check_guide(vae, x[:2], 5, 5, 2),
    "ais": lambda vae, x: ais(vae, x[:2], num_bridges=2, num_chains=2, num_steps=1),
    "bdmc": lambda vae, x: bdmc(vae, 2, num_bridges=2, num_chains=2, num_steps=1),
    "inference_gaps": lambda vae, x: inference_gaps(
        vae, x[:2], families=("diagonal",), num_samples=10, max_steps=2, check_every=1
    ),
    "elbo_decompositions": lambda vae, x: elbo_decompositions(
        vae, x[:2], num_samples=5, log_px_samples=10
    ),
    "elbo_surgery": lambda vae, x: elbo_surgery(vae, x[:4], num_samples=5),
    "active_units": lambda vae, x: active_units(vae, x[:4], num_samples=5),
    "quadrature_posterior": lambda vae, x: quadrature_posterior(
        vae, x[:2], tol=10.0, initial_points=8, max_points=64
    ),
    "fit_local_guides": lambda vae, x: fit_local_guides(vae, x[:2], max_steps=2, check_every=1),
}


@pytest.fixture
def gpu_machine(monkeypatch):
    """A machine where PyTorch sees one GPU, as far as the package asks; every
    ``nn.Module.to`` of a module of the model is recorded and does nothing (nothing
    can reach a GPU that is not there), so the estimators still run on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    moves, watched, to = [], [], torch.nn.Module.to

    def spy(module, *args, **kwargs):
        if any(module is m for vae in watched for m in vae.modules()):
            moves.append((type(module).__name__, args, kwargs))
            return module
        return to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    return watched, moves


@pytest.mark.filterwarnings("ignore:.*not to be trusted:UserWarning")  # 5 draws: unconverged
@pytest.mark.filterwarnings("ignore:quadrature_posterior did not converge:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(_ESTIMATORS))
def test_without_a_device_the_estimators_leave_the_model_where_it_is(gpu_machine, name):
    """On a machine with a GPU, an estimator called without ``device`` runs where the
    model is (here the CPU): it never moves the model. Before the one rule, evaluate,
    sample_posterior, sample_guide and check_guide moved it to CUDA."""
    watched, moves = gpu_machine
    vae, x = _small_vae(), _binary(8)
    watched.append(vae)
    before = [(p.data_ptr(), p.device) for p in vae.parameters()]
    _ESTIMATORS[name](vae, x)
    assert moves == []
    assert [(p.data_ptr(), p.device) for p in vae.parameters()] == before


@pytest.mark.filterwarnings("ignore:.*not to be trusted:UserWarning")
@pytest.mark.parametrize("name", ["evaluate", "sample_posterior", "sample_guide", "check_guide"])
def test_an_explicit_device_moves_the_model(gpu_machine, name):
    watched, moves = gpu_machine
    vae, x = _small_vae(), _binary(8)
    watched.append(vae)
    with_device = {
        "evaluate": lambda: evaluate(vae, x, 20, ks=(5,), device="cuda"),
        "sample_posterior": lambda: sample_posterior(
            vae, x[:2], 5, 5, 2, posterior_predictive=False, device="cuda"
        ),
        "sample_guide": lambda: sample_guide(vae, x[:2], 5, device="cuda"),
        "check_guide": lambda: check_guide(vae, x[:2], 5, 5, 2, device="cuda"),
    }[name]
    with_device()
    assert moves and all(args == (torch.device("cuda"),) for _, args, _ in moves)


def test_fit_is_an_entry_point_that_chooses_the_gpu(gpu_machine):
    """``fit(device=None)`` chooses CUDA where PyTorch sees a GPU (the entry points'
    choice, :func:`~pyro_vae._device.default_device`)."""
    watched, moves = gpu_machine
    vae, x = _small_vae(), _binary(20)
    watched.append(vae)
    fit(vae, x, epochs=1, batch_size=10, progress=False, validation=False)
    assert [args for _, args, _ in moves] == [(torch.device("cuda"),)]


def test_model_device_and_on_device():
    vae = _small_vae()
    assert model_device(vae) == torch.device("cpu")
    assert on_device(vae, None) is vae and model_device(vae) == torch.device("cpu")
    meta = _small_vae().to("meta")
    assert on_device(meta, None) is meta and model_device(meta) == torch.device("meta")
    with pytest.raises(ValueError, match="Expected vae to have parameters"):
        model_device(torch.nn.Identity())


def test_ais_command_with_device_cpu_on_a_machine_that_sees_a_gpu(
    tmp_path, capsys, monkeypatch, seed
):
    """``pyro-vae ais --device cpu`` where PyTorch sees a GPU: AIS runs on the CPU, and so
    must the importance-sampling estimate after it (it moved the model to CUDA and
    subtracted a CPU tensor from a CUDA one). Without CUDA the GPU is pretended."""
    from pyro_vae.cli import main

    ckpt = tmp_path / "vae.pt"
    train = ["train", "--epochs", "1", "--z-dim", "2", "--hidden-dims", "8", "--no-progress"]
    assert main([*train, "--device", "cpu", "--seed", str(seed(0)), "--checkpoint", str(ckpt)]) == 0
    if not torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    path = tmp_path / "ais.json"
    argv = ["ais", str(ckpt), "--points", "2", "--bridges", "2", "--chains", "2",
            "--num-samples", "20", "--bdmc", "2", "--seed", str(seed(1)), "--no-progress",
            "--device", "cpu", "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads(path.read_text())
    mean, _ = saved["ais"]["log_px"]
    assert saved["is"]["ais_minus_is"][0] == pytest.approx(
        mean - saved["is"]["log_px"][0], abs=1e-4
    )
    assert "forward_minus_is" in saved["bdmc"]


@CUDA
def test_ais_command_with_device_cpu_on_a_gpu_gives_the_numbers_of_a_cpu_machine(
    tmp_path, capsys, monkeypatch, seed
):
    """On a CUDA machine, ``pyro-vae ais --device cpu`` runs every estimate on the CPU:
    its numbers are those of the same command where PyTorch sees no GPU, bit for bit."""
    from pyro_vae.cli import main

    ckpt = tmp_path / "vae.pt"
    train = ["train", "--epochs", "2", "--z-dim", "2", "--hidden-dims", "8", "--no-progress"]
    assert main([*train, "--device", "cpu", "--seed", str(seed(0)), "--checkpoint", str(ckpt)]) == 0
    argv = ["ais", str(ckpt), "--points", "3", "--bridges", "5", "--chains", "4",
            "--num-samples", "100", "--bdmc", "2", "--seed", str(seed(1)), "--no-progress",
            "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--json", str(tmp_path / "gpu_machine.json")]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*argv, "--json", str(tmp_path / "cpu_machine.json")]) == 0
    on_gpu_machine, on_cpu_machine = (
        _numbers(json.loads((tmp_path / f"{name}.json").read_text()))
        for name in ("gpu_machine", "cpu_machine")
    )
    assert {"ais.log_px.0", "is.log_px.0", "bdmc.forward_minus_is.0"} <= set(on_gpu_machine)
    assert on_gpu_machine == on_cpu_machine


def _numbers(tree, prefix=""):
    """The numeric leaves of a JSON tree by dotted path, wall times left out."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        return {prefix: tree} if isinstance(tree, int | float) else {}
    out = {}
    for key, value in items:
        if key != "seconds" and not str(key).endswith("_seconds"):
            out.update(_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
