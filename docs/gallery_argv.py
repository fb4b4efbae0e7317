"""The budget flags each gallery example runs with while the site builds.

Each example's defaults are a full run; the build passes these smaller budgets so that
each example takes under a minute on 2 cores (``sphinx_gallery_conf["reset_argv"]``).
The tests (``tests/test_examples.py``) run each example's ``main`` smaller still.
"""

from pathlib import Path

BUDGETS = {
    "plot_pyro_svi.py": ["--epochs", "50", "--num-samples", "1000"],
    "plot_linear_gaussian_gap.py": ["--epochs", "30", "--num-samples", "2000"],
    "plot_compare_bounds.py": ["--epochs", "40", "--num-samples", "500"],
    "plot_beta_collapse.py": ["--epochs", "40", "--num-samples", "300"],
    "plot_hmc_vs_guide.py": ["--epochs", "60", "--points", "3", "--draws", "500"],
    "plot_gap_split.py": [
        "--epochs",
        "80",
        "--points",
        "12",
        "--num-samples",
        "1000",
        "--max-steps",
        "300",
    ],  # fmt: skip
    "plot_bdmc_sandwich.py": [
        "--epochs",
        "80",
        "--points",
        "30",
        "--steps",
        "10",
        "30",
        "100",
        "--num-samples",
        "1000",
    ],  # fmt: skip
    "plot_fashion_mnist.py": [
        "--epochs",
        "2",
        "--train",
        "4000",
        "--points",
        "100",
        "--num-samples",
        "300",
    ],  # fmt: skip
    "plot_gradient_snr.py": ["--epochs", "10", "--draws", "50"],
}


def reset_argv(gallery_conf, script_vars):
    """sys.argv[1:] of an example: its entry in :data:`BUDGETS` (none if absent)."""
    return list(BUDGETS.get(Path(script_vars["src_file"]).name, []))
