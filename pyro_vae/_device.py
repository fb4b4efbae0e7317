"""Where a model runs: the device and the floating-point precision of its parameters.

One rule, Pyro's: the tensors decide. Every tensor the model and guide create follows
their parameters (``new_zeros``, ``device=``), and every estimator runs where the
model's parameters are (:func:`model_device`), the data moved there:

- ``device=None`` (the default of :func:`pyro_vae.evaluate`,
  :func:`pyro_vae.sample_posterior`, :func:`pyro_vae.sample_guide`, the guide check)
  leaves the model where it is; the estimators without a ``device`` argument
  (:func:`pyro_vae.ais`, :func:`pyro_vae.bdmc`, :func:`pyro_vae.inference_gaps`, the
  anatomy estimators, quadrature) do the same;
- an explicit ``device`` moves the model there in place (``nn.Module.to``), and it
  stays there;
- only the entry points choose a device for the user: :func:`pyro_vae.fit` and
  :class:`~pyro_vae.TrainConfig` (``device=None``: CUDA when PyTorch sees a GPU, else
  the CPU, :func:`default_device`), :func:`pyro_vae.experiments.compare` and the
  command line's ``--device``.

Precision is the parameters' dtype: float32 or float64 (``vae.double()``,
``--dtype float64``); half precision and mixed precision are refused, since log-weights
of thousands of nats summed over pixels and their log-sum-exp lose the digits the
estimators report.
"""

import torch

__all__ = [
    "DTYPES",
    "check_device",
    "check_dtype",
    "check_precision",
    "default_device",
    "model_device",
    "on_device",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The precisions the estimators accept, by name (``--dtype``)."""


def default_device():
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"`` (str): the device the entry
    points (:func:`pyro_vae.fit`, ``compare``, the command line) choose when not told."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device, name="device"):
    """The :class:`torch.device` for ``device`` (None: :func:`default_device`, the entry
    points' choice).

    Raises
    ------
    ValueError
        If ``device`` is not None, a :class:`torch.device` or a string naming one
        (``"cpu"``, ``"cuda"``, ``"cuda:1"``), or names CUDA where PyTorch sees no GPU
        (or fewer than its index).
    """
    if device is None:
        return torch.device(default_device())
    if not isinstance(device, (str, torch.device)):
        raise ValueError(
            f"Expected {name} to be 'cpu', 'cuda', 'cuda:N' or a torch.device but got {device!r}"
        )
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ValueError(
            f"Expected {name} to be 'cpu', 'cuda', 'cuda:N' or a torch.device but got "
            f"{str(device)!r}"
        ) from e
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ValueError(
                f"Expected {name}='cpu' on this machine (PyTorch sees {count} CUDA "
                f"device(s)) but got {str(device)!r}"
            )
    return device


def check_dtype(dtype, name="dtype"):
    """The :class:`torch.dtype` for ``dtype``: float32 or float64, or their names.

    Raises
    ------
    ValueError
        For any other dtype or name (half precision loses the estimators' digits).
    """
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise ValueError(
        f"Expected {name} to be torch.float32 or torch.float64 (or 'float32', 'float64') "
        f"but got {dtype!r}"
    )


def check_precision(vae, name="vae"):
    """Raise ``ValueError`` unless the parameters of ``vae`` are float32 or float64."""
    dtype = next(vae.parameters()).dtype
    if dtype not in DTYPES.values():
        raise ValueError(
            f"Expected the parameters of {name} in float32 or float64 (the estimators need "
            f"at least single precision; mixed precision is not supported) but got {dtype}"
        )


def model_device(vae):
    """The :class:`torch.device` of the parameters of ``vae``: where its estimators run.

    Raises
    ------
    ValueError
        If ``vae`` has no parameters.
    """
    ref = next(vae.parameters(), None)
    if ref is None:
        raise ValueError(
            f"Expected vae to have parameters (their device is where it runs) but got "
            f"{type(vae).__name__} without any"
        )
    return ref.device


def on_device(vae, device, name="device"):
    """Move ``vae`` to ``device`` in place (None: leave it where it is); return it.

    The estimators' rule (module docstring): ``device=None`` means the device of the
    parameters (:func:`model_device`); an entry point that chooses a device resolves
    None first (:func:`check_device`).

    Raises
    ------
    ValueError
        As :func:`check_device` for a ``device`` that is not None, or if the parameters
        are not float32 or float64.
    """
    if device is not None:
        device = check_device(device, name)
    check_precision(vae)
    if device is not None and model_device(vae) != device:
        vae.to(device)
    return vae
