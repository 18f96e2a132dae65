"""Count the calls of a CUDA device's fused kernels (ndarray_backend_cuda.FUSED)."""
import collections
import contextlib


@contextlib.contextmanager
def count_fused_calls(device):
    """Within the block, a Counter of kernel name -> calls on `device`; restores the kernels."""
    calls = collections.Counter()
    originals = dict(device.mod.fused)

    def counted(name, kernel):
        def call(*args, **kwargs):
            calls[name] += 1
            return kernel(*args, **kwargs)
        return call

    device.mod.fused.update({name: counted(name, k) for name, k in originals.items()})
    try:
        yield calls
    finally:
        device.mod.fused.update(originals)
