"""Data sets for pyro_vae, all local: nothing is downloaded.

- :func:`load_digits`: scikit-learn's bundled UCI handwritten digits (1797 images of
  8×8 pixels), the embedded default.
- :func:`load_mnist`: MNIST from the standard IDX files in a local folder.
- :func:`load_fashion_mnist`: Fashion-MNIST (Xiao et al. 2017) from the same IDX files, by
  default where Debian's ``dataset-fashion-mnist`` package puts them
  (:data:`FASHION_MNIST_DIR`).
- :func:`load_array`: a user's own ``.npy``/``.npz``/``.csv`` matrix.
- :func:`make_linear_gaussian`: seeded draws from a linear-Gaussian (probabilistic
  PCA) model, for tests and examples.

Each loader returns a :class:`Dataset` with a fixed, seeded train/validation/test
split. Binarization follows Burda et al. (2016): ``"static"`` draws each pixel once
from Bernoulli(intensity) with a fixed seed; ``"dynamic"`` redraws the training images
at every epoch (see :meth:`Dataset.train_epoch`) while validation and test stay
statically binarized, so evaluation is deterministic; ``"threshold"`` sets each pixel
to 1[intensity > 0.5] on every split, deterministically (the protocol of Cremer, Li &
Duvenaud 2018 for Fashion-MNIST: ``lxuechen/inference-suboptimality``, ``loader.py``);
``None`` keeps the intensities in [0, 1] (for a Gaussian likelihood, or a Bernoulli one
on grey levels). The three give different data, so their log p(x) differ by tens of
nats on the same images: a number is comparable only with one of the same binarization.
"""

import gzip
import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_int

__all__ = [
    "BINARIZATIONS",
    "Dataset",
    "LinearGaussianData",
    "check_data",
    "dataset_from_spec",
    "load_array",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_linear_gaussian",
]

BINARIZATIONS = ("static", "dynamic", "threshold", None)
THRESHOLD = 0.5
"""``binarize="threshold"``: a pixel is 1 where its intensity exceeds this (raw / 255 for
MNIST and Fashion-MNIST, raw / 16 for the digits)."""
MNIST_IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
MNIST_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the Fashion-MNIST IDX files
(``apt-get install dataset-fashion-mnist``)."""
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Fashion-MNIST's class names, by label (Xiao et al. 2017)."""


@dataclass(frozen=True)
class Dataset:
    """A split data set of float32 tensors with rows = data points.

    Attributes
    ----------
    name : str
        Where the data came from.
    train, validation, test : torch.Tensor
        Shapes ``(n_train, x_dim)``, ``(n_val, x_dim)``, ``(n_test, x_dim)``; binary
        unless ``binarize`` is None (for ``"dynamic"``, ``train``
        holds one static draw, see :meth:`train_epoch`).
    binarize : {"static", "dynamic", "threshold", None}
        The binarization scheme.
    train_intensities : torch.Tensor
        The training images before binarization, shape ``(n_train, x_dim)``.
    image_shape : tuple of int or None
        ``(height, width)`` when the rows are images, for plotting.
    labels : dict or None
        Class labels (e.g. the digit) of each split's rows, ``{"train", "validation",
        "test"}`` -> long tensor of shape ``(n_split,)``, for plots only; None when the
        data set has none.
    spec : dict
        How to rebuild exactly this split with :func:`load_dataset`: ``"dataset"``
        (``"digits"``, ``"mnist:PATH"`` or a file path), ``"binarize"``,
        ``"val_fraction"``, ``"test_fraction"`` and ``"split_seed"`` (the seed of the
        permutation and of the static binarization; not the training seed).
    """

    name: str
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    binarize: str | None
    train_intensities: torch.Tensor = field(repr=False)
    image_shape: tuple | None = None
    labels: dict | None = field(default=None, repr=False)
    spec: dict = field(default_factory=dict)

    @property
    def x_dim(self):
        """Data dimension (int)."""
        return self.train.shape[1]

    def __repr__(self):
        """A one-line summary: source, split sizes, x_dim, image shape, binarization."""
        sizes = ", ".join(
            f"{split}={len(getattr(self, split))}" for split in ("train", "validation", "test")
        )
        image = (
            f"{self.image_shape[0]}x{self.image_shape[1]} images"
            if self.image_shape
            else ("not images")
        )
        labels = ", labelled" if self.labels else ""
        seed = self.spec.get("split_seed")
        split = f", split_seed={seed}" if seed is not None else ""
        return (
            f"Dataset({self.name!r}: {sizes}; x_dim={self.x_dim} ({image}{labels}); "
            f"binarize={self.binarize!r}{split})"
        )

    def train_epoch(self, generator=None):
        """Training data for one epoch, shape ``(n_train, x_dim)``.

        For ``binarize="dynamic"`` a fresh Bernoulli draw of the training intensities
        (Burda et al. 2016, sec. 5.1); otherwise :attr:`train` itself.
        """
        if self.binarize == "dynamic":
            return torch.bernoulli(self.train_intensities, generator=generator)
        return self.train


@dataclass(frozen=True)
class LinearGaussianData:
    """Draws from p(x) = N(b, WWᵀ + σ²I) with the parameters that made them.

    Attributes
    ----------
    x : torch.Tensor
        Data, shape ``(num_data, x_dim)``.
    z : torch.Tensor
        The latent draws, shape ``(num_data, z_dim)``.
    weight : torch.Tensor
        W, shape ``(x_dim, z_dim)``.
    bias : torch.Tensor
        b, shape ``(x_dim,)``.
    noise_scale : float
        σ.
    """

    x: torch.Tensor
    z: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    noise_scale: float


def _check_fractions(val_fraction, test_fraction):
    for name, value in (
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0 <= value < 1:
            raise ValueError(f"Expected {name} in [0, 1) but got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"Expected val_fraction + test_fraction < 1 but got {val_fraction} + {test_fraction}"
        )


def _check_matrix(x, name):
    if x.ndim != 2:
        raise ValueError(f"Expected {name} to be a 2-D matrix but got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"Expected {name} to be non-empty but got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"Expected {name} to hold finite values but found NaN or inf")


def _order(num_rows, seed):
    """The rows' order before the split: a permutation seeded by ``seed``, or the file's
    own order for ``seed=None``."""
    if seed is None:
        return np.arange(num_rows)
    check_int("split_seed", seed, minimum=0)
    return np.random.default_rng(seed).permutation(num_rows)


def _split(
    x,
    name,
    binarize,
    val_fraction,
    test_fraction,
    seed,
    spec,
    image_shape=None,
    order=None,
    labels=None,
):
    """Seeded permutation (or the given ``order``) into train/validation/test, then
    binarization. The test split is the last rows of the permuted data; ``labels``
    (one per row, optional) follow the same permutation."""
    if binarize not in BINARIZATIONS:
        raise ValueError(f"Expected binarize in {BINARIZATIONS} but got {binarize!r}")
    if seed is None and binarize in ("static", "dynamic"):
        raise ValueError(
            f"Expected an integer split_seed for binarize={binarize!r} (it seeds the static "
            "draw) but got None; use binarize='threshold' or None to keep the file order"
        )
    _check_fractions(val_fraction, test_fraction)
    x = np.asarray(x, dtype=np.float32)
    _check_matrix(x, name)
    if binarize is not None and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"Expected intensities in [0, 1] to binarize {name} but got values in "
            f"[{x.min()}, {x.max()}]; for real-valued data use binarize=None "
            "(CLI: --binarize none, the default with --likelihood gaussian)"
        )
    if order is None:
        order = _order(len(x), seed)
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    if len(x) - n_test - n_val < 1:
        raise ValueError(f"Expected at least one training point in {name}")
    cuts = [len(x) - n_test - n_val, len(x) - n_test]
    parts = np.split(x[order], cuts)
    intensities = [torch.from_numpy(np.ascontiguousarray(p)) for p in parts]
    if labels is not None:
        split_labels = np.split(np.asarray(labels, dtype=np.int64)[order], cuts)
        names = ("train", "validation", "test")
        labels = {name: torch.from_numpy(y) for name, y in zip(names, split_labels, strict=True)}
    if binarize is None:
        binary = intensities
    elif binarize == "threshold":
        binary = [(p > THRESHOLD).to(p.dtype) for p in intensities]
    else:
        gen = torch.Generator().manual_seed(seed)
        binary = [torch.bernoulli(p, generator=gen) for p in intensities]
    return Dataset(
        name=name,
        train=binary[0],
        validation=binary[1],
        test=binary[2],
        binarize=binarize,
        train_intensities=intensities[0],
        image_shape=image_shape,
        labels=labels,
        spec={
            "dataset": spec,
            "binarize": binarize,
            "val_fraction": val_fraction,
            "test_fraction": None if name in ("mnist", "fashion-mnist") else test_fraction,
            "split_seed": seed,
        },
    )


def load_digits(binarize="static", val_fraction=0.1, test_fraction=0.2, split_seed=0):
    """UCI handwritten digits bundled with scikit-learn: 1797 images, 8×8 pixels.

    Intensities 0–16 are scaled to [0, 1]; rows are shuffled with ``split_seed`` and split.

    Parameters
    ----------
    binarize : {"static", "dynamic", "threshold", None}, default "static"
        See the module docstring.
    val_fraction, test_fraction : float, default 0.1, 0.2
        Fractions of the 1797 images held out for validation and test.
    split_seed : int or None, default 0
        Seed of the split and of the static binarization (not of training: the
        dynamic binarization draws come from the training seed). ``None`` keeps the
        file's order (validation = the last training-file rows, as Cremer et al. 2018's
        55 000 / 5 000 split with ``val_fraction=5000 / 70000``), for ``binarize``
        ``"threshold"`` or None.

    Returns
    -------
    Dataset
        ``x_dim = 64``; with the defaults 1258 train, 180 validation, 359 test rows.

    Raises
    ------
    ValueError
        For an unknown ``binarize`` or fractions outside [0, 1).

    References
    ----------
    E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
    Learning Repository, 1998.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return _split(
        digits.data / 16.0,
        "digits",
        binarize,
        val_fraction,
        test_fraction,
        split_seed,
        "digits",
        (8, 8),
        labels=digits.target,
    )


def _read_idx(path):
    """Read an IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"Could not read MNIST file {path!r}: {e}") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"Expected an IDX file of unsigned bytes at {path!r}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"MNIST file {path!r} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(
            f"MNIST file {path!r} is truncated or corrupt: expected {size} data bytes "
            f"for shape {shape} but found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(path, stem):
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(path, name)
        if os.path.exists(candidate):
            return candidate
    expected = " and ".join(f"{s}[.gz]" for s in MNIST_IMAGES.values())
    raise FileNotFoundError(
        f"MNIST file {stem}[.gz] not found in {path!r}; expected the IDX files "
        f"{expected} there (nothing is downloaded)"
    )


def _find_labels(path, stem):
    """The labels file ``stem[.gz]`` in ``path``, or None if absent."""
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(path, name)
        if os.path.exists(candidate):
            return candidate
    return None


def _load_idx_images(path, name, spec, binarize, val_fraction, split_seed, missing):
    """The MNIST-layout IDX files of ``path`` as a :class:`Dataset` (see :func:`load_mnist`)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(missing)
    train = _read_idx(_find_idx(path, MNIST_IMAGES["train"]))
    test = _read_idx(_find_idx(path, MNIST_IMAGES["test"]))
    x = np.concatenate([train, test]).reshape(len(train) + len(test), -1) / 255.0
    label_files = [_find_labels(path, MNIST_LABELS[split]) for split in ("train", "test")]
    labels = None
    if all(label_files):
        labels = np.concatenate([_read_idx(f) for f in label_files])
        if labels.shape != (len(x),):
            raise ValueError(
                f"Expected one label per image in {path!r} ({len(x)}) but the label files "
                f"hold {labels.shape}"
            )
    # The official test set stays the test split: only the training rows are shuffled.
    order = np.concatenate([_order(len(train), split_seed), np.arange(len(train), len(x))])
    test_fraction = len(test) / len(x)
    return _split(
        x,
        name,
        binarize,
        val_fraction,
        test_fraction,
        split_seed,
        spec,
        (28, 28),
        order,
        labels,
    )


def load_mnist(path, binarize="static", val_fraction=10000 / 70000, split_seed=0):
    """MNIST from the standard IDX files in a local folder; nothing is downloaded.

    Reads ``train-images-idx3-ubyte[.gz]`` and ``t10k-images-idx3-ubyte[.gz]`` from
    ``path`` (and the labels, ``train-labels-idx1-ubyte[.gz]`` and
    ``t10k-labels-idx1-ubyte[.gz]``, when both are there). The official 10 000-image
    test set is the test split; ``val_fraction`` of the 60 000 training images (default
    10 000) is held out for validation.

    Parameters
    ----------
    path : str or os.PathLike
        Folder holding the IDX files.
    binarize : {"static", "dynamic", "threshold", None}, default "static"
        See the module docstring.
    val_fraction : float, default 1/7
        Fraction of all 70 000 images taken from the training file for validation.
    split_seed : int or None, default 0
        Seed of the split and of the static binarization (not of training: the
        dynamic binarization draws come from the training seed). ``None`` keeps the
        file's order (validation = the last training-file rows, as Cremer et al. 2018's
        55 000 / 5 000 split with ``val_fraction=5000 / 70000``), for ``binarize``
        ``"threshold"`` or None.

    Returns
    -------
    Dataset
        ``x_dim = 784``, ``image_shape = (28, 28)``; ``labels`` when the label files
        are present.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the files expected and where.
    ValueError
        If a file is truncated or not an IDX file.
    """
    missing = (
        f"MNIST folder {os.fspath(path)!r} not found; expected a folder holding "
        "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]"
    )
    return _load_idx_images(
        path, "mnist", f"mnist:{os.fspath(path)}", binarize, val_fraction, split_seed, missing
    )


def load_fashion_mnist(path=None, binarize="static", val_fraction=10000 / 70000, split_seed=0):
    """Fashion-MNIST (Xiao et al. 2017) from local IDX files; nothing is downloaded.

    70 000 grey-level 28×28 images of 10 clothing classes in MNIST's file layout, split
    as :func:`load_mnist` (50 000 / 10 000 / 10 000: the official test set is the test
    split), with the labels (:data:`FASHION_MNIST_CLASSES`). The grey levels are in
    [0, 1]; a Bernoulli likelihood needs them binarized (Burda et al. 2016: dynamic
    for training, static for validation and test, see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding the IDX files; default :data:`FASHION_MNIST_DIR`, where
        ``apt-get install dataset-fashion-mnist`` (Debian) puts them.
    binarize, val_fraction, split_seed
        As :func:`load_mnist`.

    Returns
    -------
    Dataset
        ``name = "fashion-mnist"``, ``x_dim = 784``, ``image_shape = (28, 28)``; its spec
        is ``"fashion-mnist"`` (default folder) or ``"fashion-mnist:PATH"``.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing; the message names the Debian package.
    ValueError
        If a file is truncated or not an IDX file.

    References
    ----------
    1. H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
       Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
    """
    spec = "fashion-mnist" if path is None else f"fashion-mnist:{os.fspath(path)}"
    path = FASHION_MNIST_DIR if path is None else os.fspath(path)
    missing = (
        f"Fashion-MNIST folder {path!r} not found; on Debian or Ubuntu install it with "
        "'apt-get install dataset-fashion-mnist' (it puts the IDX files in "
        f"{FASHION_MNIST_DIR}), or give a folder holding train-images-idx3-ubyte[.gz] and "
        "t10k-images-idx3-ubyte[.gz] as 'fashion-mnist:PATH'"
    )
    return _load_idx_images(
        path, "fashion-mnist", spec, binarize, val_fraction, split_seed, missing
    )


def load_array(path, binarize=None, val_fraction=0.1, test_fraction=0.2, split_seed=0):
    """A user's own data matrix from ``.npy``, ``.npz`` (first array) or ``.csv``.

    Rows are data points, columns dimensions. Split and binarized as in
    :func:`load_digits`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    binarize : {"static", "dynamic", "threshold", None}, default None
        Binarization; the values must then lie in [0, 1].
    val_fraction, test_fraction : float
        Held-out fractions.
    split_seed : int, default 0
        Seed of the split and of the static binarization.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an unknown suffix, a non-2-D, empty or non-finite matrix, or a CSV row
        that is not numbers.

    Notes
    -----
    A ``.csv`` whose first row is not all numbers (column names) has that row skipped.
    When the number of columns is a square (e.g. 784), the rows are taken as square
    images (``image_shape``), for the figures; otherwise ``image_shape`` is None.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file {path!r} not found")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        x = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise ValueError(f"Expected at least one array in {path!r}")
            x = archive[archive.files[0]]
    elif suffix == ".csv":
        x = _read_csv(path)
    else:
        raise ValueError(f"Expected a data file ending in .npy, .npz or .csv but got {path!r}")
    name = os.path.basename(path)
    side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    image_shape = (side, side) if x.ndim == 2 and side > 1 and side**2 == x.shape[1] else None
    return _split(
        x, name, binarize, val_fraction, test_fraction, split_seed, path, image_shape=image_shape
    )


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path):
    """A comma-separated matrix; a first row that is not all numbers is a header, skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    fields = [field.strip().strip('"') for field in first.split(",")]
    header = bool(first.strip()) and not all(_is_number(field) for field in fields if field)
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=int(header))
    except ValueError as e:
        detail = str(e).strip().splitlines()[0]
        raise ValueError(
            f"Expected {path!r} to hold numbers separated by commas, one data point per "
            f"row{' after its header row' if header else ''} (a first row that is not all "
            f"numbers is taken as a header and skipped), but numpy says: {detail}"
        ) from None


def make_linear_gaussian(num_data, x_dim=10, z_dim=2, noise_scale=0.5, seed=0):
    """Draw x = W z + b + σ ε with z, ε ~ N(0, I): data from probabilistic PCA.

    Parameters
    ----------
    num_data : int
        Number of points.
    x_dim, z_dim : int, default 10, 2
        Data and latent dimensions.
    noise_scale : float, default 0.5
        σ.
    seed : int, default 0
        Seed of W, b and the draws.

    Returns
    -------
    LinearGaussianData
        x of shape ``(num_data, x_dim)`` with the true W, b and σ.
    """
    for name, value in (("num_data", num_data), ("x_dim", x_dim), ("z_dim", z_dim)):
        check_int(name, value)
    if not noise_scale > 0:
        raise ValueError(f"Expected noise_scale > 0 but got {noise_scale!r}")
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(x_dim, z_dim, generator=gen)
    bias = torch.randn(x_dim, generator=gen)
    z = torch.randn(num_data, z_dim, generator=gen)
    noise = noise_scale * torch.randn(num_data, x_dim, generator=gen)
    x = z @ weight.T + bias + noise
    return LinearGaussianData(x, z, weight, bias, float(noise_scale))


def load_dataset(spec, binarize="dynamic", split_seed=0, val_fraction=None, test_fraction=None):
    """Load a data set by spec: ``"digits"``, ``"mnist:PATH"``, ``"fashion-mnist[:PATH]"``
    or a data file path.

    :func:`dataset_from_spec` rebuilds a split from :attr:`Dataset.spec`, as saved in
    a checkpoint.

    Parameters
    ----------
    spec : str
        ``"digits"`` (bundled), ``"mnist:PATH"`` (local IDX files),
        ``"fashion-mnist"`` (Debian's package, :data:`FASHION_MNIST_DIR`) or
        ``"fashion-mnist:PATH"``, or a ``.npy``/``.npz``/``.csv`` path.
    binarize : {"static", "dynamic", "threshold", None}, default "dynamic"
        See the module docstring.
    split_seed : int, default 0
        Seed of the split and the static binarization.
    val_fraction, test_fraction : float, optional
        Held-out fractions; default each loader's (the (Fashion-)MNIST test split is always
        the official one, so ``test_fraction`` is not used for it).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        For an unknown spec or invalid fractions, as the loaders.
    FileNotFoundError
        If a file named by the spec does not exist.
    """
    fractions = {}
    if val_fraction is not None:
        fractions["val_fraction"] = val_fraction
    if not isinstance(spec, str):
        raise ValueError(f"Expected dataset spec to be a str but got {spec!r}")
    if spec.startswith("mnist:"):
        return load_mnist(spec[len("mnist:") :], binarize, split_seed=split_seed, **fractions)
    if spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        path = spec[len("fashion-mnist:") :] if ":" in spec else None
        return load_fashion_mnist(path, binarize, split_seed=split_seed, **fractions)
    if test_fraction is not None:
        fractions["test_fraction"] = test_fraction
    if spec == "digits":
        return load_digits(binarize, split_seed=split_seed, **fractions)
    if os.path.splitext(spec)[1].lower() in (".npy", ".npz", ".csv"):
        return load_array(spec, binarize, split_seed=split_seed, **fractions)
    raise ValueError(
        "Expected dataset 'digits', 'mnist:PATH', 'fashion-mnist[:PATH]' or a "
        f".npy/.npz/.csv path but got {spec!r}"
    )


def dataset_from_spec(spec):
    """Rebuild the split described by :attr:`Dataset.spec` (e.g. from a checkpoint).

    Raises
    ------
    ValueError
        If ``spec`` lacks a key of :attr:`Dataset.spec`.
    """
    keys = ("dataset", "binarize", "val_fraction", "test_fraction", "split_seed")
    missing = [key for key in keys if key not in (spec or {})]
    if missing:
        raise ValueError(f"Expected a data spec with keys {keys} but {missing} are missing")
    return load_dataset(
        spec["dataset"],
        spec["binarize"],
        spec["split_seed"],
        spec["val_fraction"],
        spec["test_fraction"],
    )


def check_data(x, vae, name="data"):
    """Validate a data matrix for ``vae`` once, at a public entry point.

    Parameters
    ----------
    x : torch.Tensor
        Shape ``(num_data, vae.x_dim)``; any real or bool dtype.
    vae : pyro_vae.models.base.BaseVAE
        The model; x is returned on its parameters' dtype and device.
    name : str
        The argument's name, for messages.

    Returns
    -------
    torch.Tensor
        x, of the model's dtype and on its device.

    Raises
    ------
    ValueError
        If ``vae`` has no parameters (an object holding a model and guide that is not an
        ``nn.Module``), x is not a non-empty real-valued 2-D matrix of width
        ``vae.x_dim``, holds NaN or inf, or, for a Bernoulli likelihood, values other
        than 0 and 1 (grey levels give a cross-entropy, not a log-likelihood: binarize
        them, or use the ``"continuous_bernoulli"`` or ``"gaussian"`` likelihood).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"Expected {name} to be a torch.Tensor but got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(
            f"Expected {name} of shape (num_data, {vae.x_dim}) but got {tuple(x.shape)}"
        )
    if x.is_complex():
        raise ValueError(
            f"Expected {name} to be real-valued (a float, integer or bool dtype) but got {x.dtype}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected {name} to hold at least one data point but it is empty")
    if x.shape[1] != vae.x_dim:
        raise ValueError(f"Expected {name} of width x_dim={vae.x_dim} but got width {x.shape[1]}")
    parameters = getattr(vae, "parameters", None)
    ref = next(parameters(), None) if callable(parameters) else None
    if ref is None:
        raise ValueError(
            "Expected vae to be a torch.nn.Module with parameters (they give x its dtype and "
            f"device) but got {type(vae).__name__}, which has x_dim and no parameters(); "
            "make the holder an nn.Module with the VAE as an attribute (self.vae = vae), or "
            "give it no x_dim"
        )
    x = x.to(dtype=ref.dtype, device=ref.device)
    if not torch.isfinite(x).all():
        raise ValueError(f"Expected {name} to hold finite values but found NaN or inf")
    likelihood = getattr(vae, "likelihood", None)
    if likelihood == "bernoulli" and ((x != 0) & (x != 1)).any():
        raise ValueError(
            f"Expected binary {name} (0 or 1) for the Bernoulli likelihood but got values in "
            f"[{x.min().item():g}, {x.max().item():g}] that are not all 0 or 1: its "
            "log-density would be a cross-entropy, not a log-likelihood (Loaiza-Ganem & "
            "Cunningham 2019). Binarize the data (binarize='static' or 'dynamic'), or use "
            "likelihood='continuous_bernoulli' or 'gaussian'"
        )
    if likelihood == "continuous_bernoulli" and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"Expected {name} in [0, 1] for the continuous Bernoulli likelihood but got "
            f"values in [{x.min().item():g}, {x.max().item():g}]"
        )
    return x
