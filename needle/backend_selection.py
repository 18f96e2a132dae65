"""Which array backend Tensors hold, chosen by the NEEDLE_BACKEND environment variable.

`nd` (default): NDArray on cpu_numpy()/cpu()/cuda(). `np`: plain NumPy arrays (the course's
hw1/hw2 flavour). The course reads the variable once, at import; so does needle.
"""
import os

import numpy

BACKEND = os.environ.get("NEEDLE_BACKEND", "nd")

if BACKEND == "nd":
    from . import backend_ndarray as array_api
    from .backend_ndarray import (NDArray, all_devices, cpu, cpu_numpy, cuda,  # noqa: F401
                                  default_device)
    from .backend_ndarray import BackendDevice as Device

    def device_of(data):
        return data.device

    def as_array(data):
        return data
elif BACKEND == "np":
    from . import backend_numpy as array_api  # noqa: F401
    from .backend_numpy import Device, NDArray, all_devices, cpu, default_device  # noqa: F401

    def device_of(data):
        return cpu()

    def as_array(data):
        """Ops on 0-d arrays return NumPy scalars; Tensor data stays an ndarray (hw1)."""
        return data if isinstance(data, (NDArray, tuple)) else numpy.asarray(data)
else:
    raise ValueError(f"NEEDLE_BACKEND must be 'nd' or 'np', got {BACKEND!r}")
