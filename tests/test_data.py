import gzip
import math
import os
import struct

import numpy as np
import pytest
import torch

from pyro_vae.data import (
    FASHION_MNIST_DIR,
    dataset_from_spec,
    load_array,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    make_linear_gaussian,
)


def sorted_rows(x):
    """Rows of a 2-D array sorted lexicographically (first column most significant)."""
    x = np.asarray(x)
    return x[np.lexsort(x.T[::-1])]


def is_binary(x):
    return bool(((x == 0) | (x == 1)).all())


# ------------------------------------------------------------------ load_digits


@pytest.mark.parametrize("binarize", ["static", "dynamic", None])
def test_load_digits_shapes(binarize):
    ds = load_digits(binarize=binarize)
    assert ds.train.shape == (1258, 64)
    assert ds.validation.shape == (180, 64)
    assert ds.test.shape == (359, 64)
    assert ds.train_intensities.shape == (1258, 64)
    assert ds.x_dim == 64
    assert ds.image_shape == (8, 8)
    assert ds.binarize == binarize
    for split in (ds.train, ds.validation, ds.test):
        assert split.dtype == torch.float32


@pytest.mark.parametrize("binarize", ["static", "dynamic"])
def test_load_digits_binary(binarize):
    ds = load_digits(binarize=binarize)
    for split in (ds.train, ds.validation, ds.test):
        assert is_binary(split)
    # A sensible fraction of pixels is on: the mean intensity of the digits is ≈ 0.3.
    assert 0.2 < ds.train.mean().item() < 0.4
    assert torch.equal(ds.train_intensities, load_digits(binarize=None).train)


def test_load_digits_continuous():
    ds = load_digits(binarize=None)
    for split in (ds.train, ds.validation, ds.test):
        assert split.min() >= 0 and split.max() <= 1
    # Grey levels, not binary: the 17 levels k/16 occur.
    levels = torch.unique(torch.cat([ds.train, ds.validation, ds.test]))
    assert len(levels) == 17
    assert torch.allclose(levels, torch.arange(17) / 16.0)
    assert torch.equal(ds.train, ds.train_intensities)


def test_load_digits_split_seeded(seed):
    a, b = load_digits(split_seed=seed(0)), load_digits(split_seed=seed(0))
    for name in ("train", "validation", "test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = load_digits(binarize=None, split_seed=seed(0))
    d = load_digits(binarize=None, split_seed=seed(1))
    assert not torch.equal(c.test, d.test)
    assert not torch.equal(c.train, d.train)


def test_load_digits_splits_partition_the_data():
    from sklearn.datasets import load_digits as sklearn_digits

    ds = load_digits(binarize=None)
    rows = torch.cat([ds.train, ds.validation, ds.test]).numpy()
    assert len(rows) == 1797
    expected = (sklearn_digits().data / 16.0).astype(np.float32)
    np.testing.assert_array_equal(sorted_rows(rows), sorted_rows(expected))


def test_dynamic_train_epoch_redraws_with_the_right_mean(seed):
    ds = load_digits(binarize="dynamic")
    gen = torch.Generator().manual_seed(seed(123))
    first, second = ds.train_epoch(gen), ds.train_epoch(gen)
    assert first.shape == ds.train.shape
    assert is_binary(first) and is_binary(second)
    assert not torch.equal(first, second)
    # The evaluation splits stay fixed (static) for a dynamic data set.
    again = load_digits(binarize="dynamic")
    assert torch.equal(ds.test, again.test)
    assert torch.equal(ds.validation, again.validation)

    n = 300
    total = first + second
    for _ in range(n - 2):
        total += ds.train_epoch(gen)
    mean = total / n
    p = ds.train_intensities
    # Each pixel mean over n Bernoulli(p) draws has standard deviation √(p(1−p)/n).
    # Allow 6 of them (the max over ~80 000 pixels of |N(0,1)| stays below 6 with
    # probability ≈ 1 − 1.6e-4) plus 1/n for the discreteness of the counts.
    sd = (p * (1 - p) / n).sqrt()
    assert ((mean - p).abs() <= 6 * sd + 1.0 / n).all()
    # Pixels with intensity exactly 0 or 1 are never (or always) on.
    assert torch.equal(mean[p == 0], p[p == 0])
    assert torch.equal(mean[p == 1], p[p == 1])
    # The global mean is much tighter: the sum of n × #pixels independent Bernoulli draws
    # has variance n Σ p(1−p), so the mean's sd is √(Σ p(1−p)) / (√n × #pixels). (It was
    # written with n for √n: 17 times too tight, a pass on one stream and a failure on
    # the next.) 4 sd: a false alarm with probability 6e-5.
    global_sd = (p * (1 - p)).sum().sqrt() / (math.sqrt(n) * p.numel())
    assert abs(mean.mean() - p.mean()) < 4 * global_sd


def test_static_train_epoch_returns_train(seed):
    ds = load_digits(binarize="static")
    assert ds.train_epoch() is ds.train
    assert ds.train_epoch(torch.Generator().manual_seed(seed(5))) is ds.train


def test_load_digits_bad_arguments():
    with pytest.raises(ValueError, match="binarize"):
        load_digits(binarize="dyn")
    with pytest.raises(ValueError, match="val_fraction"):
        load_digits(val_fraction=1.5)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(val_fraction=0.5, test_fraction=0.6)


# ------------------------------------------------------------------- load_mnist


def write_idx(path, array, compress=False):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return payload


@pytest.fixture
def fake_images(seed):
    rng = np.random.default_rng(seed(0))
    train = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    return train, test


@pytest.mark.parametrize("train_gz, test_gz", [(True, False), (False, True)])
def test_load_mnist_shapes_and_official_test_split(tmp_path, fake_images, train_gz, test_gz):
    train, test = fake_images
    write_idx(tmp_path / "train-images-idx3-ubyte", train, compress=train_gz)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test, compress=test_gz)
    ds = load_mnist(tmp_path, binarize=None)
    assert ds.x_dim == 784
    assert ds.image_shape == (28, 28)
    # val_fraction = 1/7 of all 25 images → round(3.57) = 4 validation rows.
    assert ds.train.shape == (16, 784)
    assert ds.validation.shape == (4, 784)
    assert ds.test.shape == (5, 784)
    expected_test = torch.from_numpy(test.reshape(5, 784) / 255.0).float()
    assert torch.equal(ds.test, expected_test)
    train_rows = torch.cat([ds.train, ds.validation]).numpy()
    expected_train = (train.reshape(20, 784) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(sorted_rows(train_rows), sorted_rows(expected_train))


def test_load_mnist_static_binarization(tmp_path, fake_images):
    train, test = fake_images
    write_idx(tmp_path / "train-images-idx3-ubyte", train, compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test, compress=True)
    ds = load_mnist(str(tmp_path))
    assert ds.binarize == "static"
    for split in (ds.train, ds.validation, ds.test):
        assert is_binary(split)
    assert ds.test.shape == (5, 784)


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message
    assert "t10k-images-idx3-ubyte" in message


def test_load_mnist_missing_test_file(tmp_path, fake_images):
    write_idx(tmp_path / "train-images-idx3-ubyte", fake_images[0])
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_truncated_data(tmp_path, fake_images):
    train, test = fake_images
    payload = write_idx(tmp_path / "train-images-idx3-ubyte", train)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(payload[:-100])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path)


def test_load_mnist_truncated_header(tmp_path, fake_images):
    train, test = fake_images
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    payload = write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(payload[:9])
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path)


def test_load_mnist_truncated_gzipped_payload(tmp_path, fake_images):
    train, test = fake_images
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    payload = write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(payload[:-1])
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path)


def test_load_mnist_not_an_idx_file(tmp_path, fake_images):
    write_idx(tmp_path / "train-images-idx3-ubyte", fake_images[0])
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"<html>not mnist</html>")
    with pytest.raises(ValueError, match="IDX"):
        load_mnist(tmp_path)


# -------------------------------------------------------------------- load_array


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_load_array_round_trip(tmp_path, suffix, seed):
    x = np.random.default_rng(seed(1)).normal(size=(50, 3))
    path = tmp_path / f"data{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    elif suffix == ".npz":
        np.savez(path, first=x, second=np.zeros(2))
    else:
        np.savetxt(path, x, delimiter=",")
    ds = load_array(path)
    assert ds.name == f"data{suffix}"
    assert ds.train.shape == (35, 3)
    assert ds.validation.shape == (5, 3)
    assert ds.test.shape == (10, 3)
    rows = torch.cat([ds.train, ds.validation, ds.test]).numpy()
    np.testing.assert_array_equal(sorted_rows(rows), sorted_rows(x.astype(np.float32)))


def test_load_array_errors(tmp_path):
    unknown = tmp_path / "data.txt"
    unknown.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"\.npy"):
        load_array(unknown)

    nan = np.ones((10, 2))
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match="finite"):
        load_array(tmp_path / "nan.npy")

    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty"):
        load_array(tmp_path / "empty.npy")

    np.save(tmp_path / "big.npy", np.full((10, 2), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\].*--binarize none"):
        load_array(tmp_path / "big.npy", binarize="static")

    with pytest.raises(FileNotFoundError):
        load_array(tmp_path / "missing.npy")


def test_load_array_skips_a_csv_header(tmp_path, seed):
    """A header row of column names is skipped; the numbers below it are the data."""
    x = np.random.default_rng(seed(2)).normal(size=(20, 3))
    path = tmp_path / "named.csv"
    np.savetxt(path, x, delimiter=",", header="c0,c1,c2", comments="")
    assert path.read_text().startswith("c0,c1,c2\n")
    ds = load_array(path)
    rows = torch.cat([ds.train, ds.validation, ds.test]).numpy()
    np.testing.assert_array_equal(sorted_rows(rows), sorted_rows(x.astype(np.float32)))


def test_load_array_csv_with_text_below_the_first_row(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"numbers separated by commas.*numpy says"):
        load_array(path)


def test_load_array_square_columns_are_images(tmp_path):
    np.save(tmp_path / "square.npy", np.full((20, 16), 0.5))
    np.save(tmp_path / "flat.npy", np.full((20, 15), 0.5))
    assert load_array(tmp_path / "square.npy").image_shape == (4, 4)
    assert load_array(tmp_path / "flat.npy").image_shape is None


def test_dataset_prints_a_short_summary():
    text = repr(load_digits(binarize="dynamic"))
    assert text == (
        "Dataset('digits': train=1258, validation=180, test=359; x_dim=64 "
        "(8x8 images, labelled); binarize='dynamic', split_seed=0)"
    )
    assert str(load_digits()) == repr(load_digits()) and "tensor" not in text


def test_load_array_binarizes(tmp_path):
    np.save(tmp_path / "p.npy", np.full((40, 4), 0.5))
    ds = load_array(tmp_path / "p.npy", binarize="static")
    assert is_binary(ds.train)
    assert torch.equal(ds.train_intensities, torch.full((28, 4), 0.5))


# ---------------------------------------------------------- make_linear_gaussian


def test_make_linear_gaussian_shapes_and_seed(seed):
    a = make_linear_gaussian(100, x_dim=7, z_dim=3, noise_scale=0.2, seed=seed(4))
    assert a.x.shape == (100, 7)
    assert a.z.shape == (100, 3)
    assert a.weight.shape == (7, 3)
    assert a.bias.shape == (7,)
    assert a.noise_scale == 0.2
    b = make_linear_gaussian(100, x_dim=7, z_dim=3, noise_scale=0.2, seed=seed(4))
    assert torch.equal(a.x, b.x) and torch.equal(a.weight, b.weight)
    c = make_linear_gaussian(100, x_dim=7, z_dim=3, noise_scale=0.2, seed=seed(5))
    assert not torch.equal(a.x, c.x)
    # x = W z + b + σ ε: the residual is the noise, of size ≈ σ.
    residual = a.x - a.z @ a.weight.T - a.bias
    assert 0.15 < residual.std().item() < 0.25


def test_make_linear_gaussian_covariance(seed):
    n = 20000
    data = make_linear_gaussian(n, 10, 2, 0.5, seed=seed(0))
    x = data.x.double()
    sample_cov = torch.cov(x.T)
    true_cov = data.weight.double() @ data.weight.double().T + 0.25 * torch.eye(10)
    # For Gaussian data Var(S_ij) = (Σ_ii Σ_jj + Σ_ij²)/N ≤ 2 max_k Σ_kk² / N, so every
    # entry of the sample covariance has sd ≤ √(2/N) · max diag(Σ); 5 sd bounds the
    # max over the 55 distinct entries with probability > 1 − 55 · 6e-7.
    tolerance = 5 * math.sqrt(2 / n) * true_cov.diagonal().max()
    assert (sample_cov - true_cov).abs().max() < tolerance
    # The sample mean is within 5 sd (√(Σ_ii / N)) of b.
    mean_sd = (true_cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - data.bias.double()).abs() < 5 * mean_sd).all()


def test_make_linear_gaussian_errors():
    with pytest.raises(ValueError, match="num_data"):
        make_linear_gaussian(0)
    with pytest.raises(ValueError, match="noise_scale"):
        make_linear_gaussian(10, noise_scale=-1.0)


def test_digit_labels_follow_the_split(seed):
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    ds = load_digits(binarize=None, split_seed=seed(3))
    assert {k: len(v) for k, v in ds.labels.items()} == {
        "train": len(ds.train), "validation": len(ds.validation), "test": len(ds.test)
    }  # fmt: skip
    # each test row is the image of its label: find it in the raw data
    for row, label in zip(ds.test[:20], ds.labels["test"][:20], strict=True):
        match = (torch.from_numpy(raw.data / 16.0).float() == row).all(1).nonzero()
        assert label.item() in raw.target[match.squeeze(1).numpy()]


# ------------------------------------------------------------ Fashion-MNIST


def test_fashion_mnist_spec_reads_idx_files_and_labels(tmp_path, fake_images, seed):
    # "fashion-mnist:PATH": MNIST's layout, the official test split last, labels kept and
    # permuted with their images; the spec rebuilds the same split.
    train, test = fake_images
    rng = np.random.default_rng(seed(1))
    train_labels, test_labels = rng.integers(0, 10, 20), rng.integers(0, 10, 5)
    for stem, array in (("train-images-idx3-ubyte", train), ("t10k-images-idx3-ubyte", test),
                        ("train-labels-idx1-ubyte", train_labels),
                        ("t10k-labels-idx1-ubyte", test_labels)):  # fmt: skip
        write_idx(tmp_path / stem, array, compress=True)
    ds = load_dataset(f"fashion-mnist:{tmp_path}", None, val_fraction=5 / 25)
    assert ds.name == "fashion-mnist" and ds.image_shape == (28, 28) and ds.x_dim == 784
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (15, 5, 5)
    np.testing.assert_array_equal(ds.labels["test"].numpy(), test_labels)
    originals = train.reshape(20, -1).astype(np.float32) / 255.0
    for split in ("train", "validation"):  # each label travels with its image
        for image, label in zip(getattr(ds, split).numpy(), ds.labels[split].numpy(), strict=True):
            (row,) = np.flatnonzero(np.abs(originals - image).max(1) < 1e-6)
            assert train_labels[row] == label
    assert ds.spec["dataset"] == f"fashion-mnist:{tmp_path}" and ds.spec["test_fraction"] is None
    again = dataset_from_spec(ds.spec)
    assert torch.equal(again.train, ds.train)
    assert torch.equal(again.labels["train"], ds.labels["train"])


def test_fashion_mnist_missing_names_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(f"fashion-mnist:{tmp_path / 'nowhere'}")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "nowhere" in message
    assert len(message.splitlines()) == 1


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason=f"no {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)
def test_fashion_mnist_from_debians_package():
    ds = load_fashion_mnist(binarize="dynamic")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (50000, 10000, 10000)
    assert ds.x_dim == 784 and ds.spec["dataset"] == "fashion-mnist"
    assert ds.test.unique().tolist() == [0.0, 1.0]  # test: static binarization
    assert ds.train_intensities.min() >= 0 and ds.train_intensities.max() <= 1
    assert 0.2 < ds.train_intensities.mean() < 0.4  # grey levels, not binary
    # the official test set in its file order: 1000 of each of the 10 classes
    assert torch.bincount(ds.labels["test"]).tolist() == [1000] * 10
    assert torch.bincount(ds.labels["train"], minlength=10).sum() == 50000


def _raw_idx_images(path):
    """The images of an IDX file as uint8 ``(n, rows * cols)``, read with the header's
    own sizes (independently of the package's reader)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">4I", raw[:16])
    assert magic == 2051
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason=f"no {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)
@pytest.mark.parametrize("split_seed", [None, 0])
def test_threshold_binarization_is_the_raw_bytes_above_half(split_seed):
    # Cremer et al. (2018) binarize Fashion-MNIST as x = 1[raw / 255 > 0.5] on every split:
    # raw >= 128. split_seed=None keeps the file order (their 55 000 / 5 000 split).
    train = _raw_idx_images(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
    test = _raw_idx_images(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"))
    ds = load_dataset(
        "fashion-mnist", binarize="threshold", split_seed=split_seed, val_fraction=5000 / 70000
    )
    order = np.arange(60000) if split_seed is None else np.random.default_rng(0).permutation(60000)
    expected = {
        "train": train[order[:55000]],
        "validation": train[order[55000:]],
        "test": test,
    }
    for split, raw in expected.items():
        assert torch.equal(getattr(ds, split), torch.from_numpy((raw >= 128).astype(np.float32)))
    assert torch.equal(ds.train_epoch(), ds.train)  # the same every epoch
    assert ds.binarize == "threshold" and ds.spec["split_seed"] == split_seed
    assert "binarize='threshold'" in repr(ds)


def test_threshold_binarization_of_the_digits_and_static_needs_a_seed():
    ds = load_digits(binarize="threshold", split_seed=None)
    grey = load_digits(binarize=None, split_seed=None)
    for split in ("train", "validation", "test"):
        assert torch.equal(getattr(ds, split), (getattr(grey, split) > 0.5).float())
    # file order: the first rows of scikit-learn's digits are the training rows
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits().data
    assert torch.equal(ds.train[:5], torch.from_numpy((raw[:5] > 8).astype(np.float32)))
    with pytest.raises(ValueError, match="Expected an integer split_seed for binarize='static'"):
        load_digits(binarize="static", split_seed=None)
