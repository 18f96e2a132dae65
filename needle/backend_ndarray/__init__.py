"""The NDArray backend: strided arrays over NumPy, CuPy or native flat-memory devices."""
from .array_api import *  # noqa: F401,F403
from .array_api import __all__ as _array_api_names
from .devices import BackendDevice, all_devices, cpu, cpu_numpy, cuda, default_device
from .ndarray import NDArray

__all__ = ["NDArray", "BackendDevice", "all_devices", "cpu", "cpu_numpy", "cuda",
           "default_device", *_array_api_names]
