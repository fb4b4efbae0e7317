"""The issue's yardstick: a hand-written PyTorch VAE (64-256-8, softplus, Adam 1e-3, batch
128, dynamic binarization, 80/20 split of the digits, 1000 epochs, K = 5000) reached a test
log p(x) of −22.68 nats trained on the ELBO and −22.49 trained on IWAE-5, with test ELBOs
−23.08 and −23.43. The package, at the same settings, must land within a tolerance that
stands for the measured retraining spread.

Retraining spread, measured with ``benchmarks/yardstick_spread.py`` over training seeds
0–4 on the same split (nats per test point, mean and s.d. across the 5 seeds):

==========  =================  =================
trained on  test log p(x)      test ELBO
==========  =================  =================
Trace_ELBO  −22.688, s.d. 0.012  −23.006, s.d. 0.011
IWAE-5      −22.490, s.d. 0.019  −23.350, s.d. 0.071
==========  =================  =================

The reference is one run of another implementation, with a spread of its own; assuming the
same spread, the difference of one run here and the reference has s.d. √2 · s.d., and the
test allows 4 of those (log p(x): 0.07 nats for Trace_ELBO, 0.11 for IWAE). The ELBOs are
not compared with the reference: the IWAE model's ELBO spreads more, and the reference's
−23.08 for Trace_ELBO sits 6 s.d. from the mean here; the package's own numbers are the ones
in the table above.
"""

import math

import pytest
import torch

from pyro_vae import VAE, evaluate, fit
from pyro_vae.data import load_digits

REFERENCE = {"trace": -22.68, "renyi": -22.49}
SPREAD = {"trace": 0.012, "renyi": 0.019}  # s.d. of test log p(x) across training seeds


@pytest.fixture(scope="module")
def trained(seed):
    # split_seed stays fixed: REFERENCE and SPREAD were measured on this very split.
    data = load_digits(binarize="dynamic", val_fraction=0.0, test_fraction=0.2, split_seed=0)
    results = {}
    for loss, k in (("trace", 1), ("renyi", 5)):
        torch.manual_seed(seed(0))
        vae = VAE(64, z_dim=8, hidden_dims=(256,))
        fit(vae, data, loss=loss, num_particles=k, epochs=1000, progress=False, seed=seed(0))
        results[loss] = evaluate(vae, data.test, 5000, seed=seed(0)).summary()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["trace", "renyi"])
def test_log_likelihood_matches_reference(trained, loss):
    log_px, se = trained[loss]["log_px"]
    assert se < 0.01
    assert log_px == pytest.approx(REFERENCE[loss], abs=4 * math.sqrt(2) * SPREAD[loss])


@pytest.mark.slow
def test_iwae_trades_elbo_for_log_likelihood(trained):
    # Burda et al. (2016): the IWAE-trained model has the higher log p(x) but the lower
    # ELBO. Across seeds (table above) the log p(x) difference is 0.198 nats with s.d.
    # √(0.012² + 0.019²) = 0.022, and the ELBO difference 0.344 with s.d. 0.072: the
    # 0.1-nat margins sit 4.4 and 3.4 s.d. below them.
    trace, iwae = trained["trace"], trained["renyi"]
    assert iwae["log_px"][0] > trace["log_px"][0] + 0.1
    assert iwae["elbo"][0] < trace["elbo"][0] - 0.1
    assert iwae["gap"][0] > trace["gap"][0]
