"""Raw arrays for the wire: a Tensor's storage as an `xp` array and back, and flat buckets.

A collective works on one contiguous NumPy (MPI) or CuPy (NCCL) array. `as_xp` gives a
Tensor's data in that form (a view on NumPy/CuPy devices, a host copy on the course's
flat-memory `cpu()`), `like` turns a result back into the storage kind it came from, and
`in_buckets` packs many arrays into a few flat buffers so that one collective serves each
bucket instead of one per parameter.
"""
import numpy as np

from ..backend_ndarray import NDArray

__all__ = ["as_xp", "like", "in_buckets"]


def as_xp(data):
    """(xp, array): `data` (an NDArray or a NumPy array) as an array of its device's module."""
    if isinstance(data, np.ndarray):
        return np, data
    xp = data.device.xp
    if xp is None:  # cpu(): the course's flat-memory table; its arrays live on the host
        return np, data.numpy()
    return xp, data._view()


def like(array, template):
    """`array` (xp) as storage of the kind and device of `template` (NDArray or NumPy)."""
    if isinstance(template, np.ndarray):
        return array
    if template.device.xp is None:
        return NDArray(array, device=template.device, dtype=str(array.dtype))
    return NDArray._wrap(template.device, array)


def _plan(arrays, bucket_bytes):
    """Lists of indices into `arrays` (xp, array): each bucket holds one array module and one
    dtype, keeps the given order, and closes before it would pass `bucket_bytes` (a larger
    array gets a bucket of its own)."""
    buckets, current = [], {}  # current: (module, dtype) -> (open bucket, its bytes)
    for index, (xp, array) in enumerate(arrays):
        key = (xp.__name__, str(array.dtype))
        indices, size = current.get(key, (None, 0))
        if indices is None or size + array.nbytes > bucket_bytes:
            indices, size = [], 0
            buckets.append(indices)
        indices.append(index)
        current[key] = (indices, size + array.nbytes)
    return buckets


def in_buckets(datas, bucket_bytes, collective):
    """Run `collective(flat)` (in place) on flat buffers packing `datas`; returns the results
    as storage like each input (views of the buffers, which are fresh each call).

    The buckets depend only on the shapes, dtypes and order of `datas`, so every rank that
    passes the same list gets the same buckets and the collectives pair up.
    """
    arrays = [as_xp(data) for data in datas]
    results = [None] * len(datas)
    for bucket in _plan(arrays, bucket_bytes):
        xp = arrays[bucket[0]][0]
        sizes = [arrays[i][1].size for i in bucket]
        flat = xp.empty(sum(sizes), dtype=arrays[bucket[0]][1].dtype)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        for i, start, stop in zip(bucket, offsets, offsets[1:]):
            flat[start:stop] = arrays[i][1].reshape(-1)
        collective(flat)
        for i, start, stop in zip(bucket, offsets, offsets[1:]):
            results[i] = like(flat[start:stop].reshape(arrays[i][1].shape), datas[i])
    return results
