"""Named settings of published experiments: data, networks and training in one object.

A :class:`Preset` holds what a paper's protocol fixes — how the data are loaded and
binarized, the networks, the guides compared and the training settings — so that a
benchmark, a script and a test use one copy of it. :data:`CREMER2018` is the
Fashion-MNIST setting of Cremer, Li & Duvenaud (2018), Table 2, as their code has it
(``benchmarks/bench_cremer2018.py`` cites the files and lines, and lists what differs).

Examples
--------
>>> from pyro_vae.train.presets import CREMER2018
>>> data = CREMER2018.load_data()                        # doctest: +SKIP
>>> vae = CREMER2018.build_model("ffg")
>>> fit(vae, data, CREMER2018.train.replace(epochs=364))  # doctest: +SKIP

References
----------
1. C. Cremer, X. Li, D. Duvenaud, "Inference Suboptimality in Variational Autoencoders",
   ICML 2018.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from dataclasses import dataclass

from ..data import load_dataset
from ..models import VAE
from .config import TrainConfig

__all__ = ["CREMER2018", "PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """A published experiment's data, networks, guides and training settings.

    Attributes
    ----------
    name : str
        Short name (``"cremer2018"``).
    data : dict
        Keyword arguments of :func:`pyro_vae.data.load_dataset`.
    model : dict
        Keyword arguments of :class:`pyro_vae.VAE`, less ``encoder``.
    guides : dict
        Guide name → the ``encoder`` spec of :class:`pyro_vae.VAE`.
    train : TrainConfig
        The training settings (:func:`pyro_vae.fit`).
    reference : str
        The paper.
    """

    name: str
    data: dict
    model: dict
    guides: dict
    train: TrainConfig
    reference: str = ""

    def load_data(self):
        """The data set, split and binarized as the paper's code does
        (:class:`pyro_vae.data.Dataset`)."""
        return load_dataset(**self.data)

    def build_model(self, guide, name=None):
        """A new :class:`pyro_vae.VAE` with the paper's networks and the guide ``guide``.

        Raises
        ------
        ValueError
            If ``guide`` is not one of :attr:`guides`.
        """
        if guide not in self.guides:
            raise ValueError(
                f"Expected guide in {tuple(self.guides)} for the {self.name} preset but got "
                f"{guide!r}"
            )
        return VAE(**self.model, encoder=self.guides[guide], name=name)


CREMER2018 = Preset(
    name="cremer2018",
    data={
        "spec": "fashion-mnist",
        "binarize": "threshold",  # 1[raw / 255 > 0.5] on every split
        "split_seed": None,  # file order: the first 55 000 training images train
        "val_fraction": 5000 / 70000,  # the last 5 000 of the training file validate
    },
    model={
        "x_dim": 784,
        "z_dim": 50,
        "hidden_dims": (200, 200),
        "activation": "elu",
        "likelihood": "bernoulli",
    },
    guides={"ffg": "diagonal", "flow": "coupling:2"},
    train=TrainConfig(
        loss="trace",
        num_particles=1,
        epochs=3280,  # Burda et al.'s eight stages, 3^0 + ... + 3^7
        batch_size=100,
        lr=1e-3,
        lr_schedule="burda2016",
        adam_eps=1e-4,
        monitor="elbo",
        val_samples=2,
        patience=None,  # trained to the end, as their code's default
        restore_best=False,  # the last epoch's parameters
        num_threads=1,
    ),
    reference="C. Cremer, X. Li, D. Duvenaud, Inference Suboptimality in Variational "
    "Autoencoders, ICML 2018, Table 2 (Fashion-MNIST)",
)
"""Cremer et al. (2018)'s Fashion-MNIST setting, from ``lxuechen/inference-suboptimality``
(the code of their Table 2): thresholded data, 55 000 / 5 000 / 10 000 in file order,
z = 50, ELU MLPs 784-200-200 and 50-200-200-784, batch 100, Adam (ε = 1e-4) at 1e-3 on
Burda et al.'s 3^i-epoch stages, one sample per point, no warm-up, the last epoch kept.
Guides: ``"ffg"``, the factorized Gaussian; ``"flow"``, the nearest of the package's flows
(two affine couplings conditioned on the encoder's features, where the paper's flow also
has an auxiliary variable)."""

PRESETS = {CREMER2018.name: CREMER2018}
"""The presets by name."""
