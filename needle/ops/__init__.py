"""Operators, one family per file; the functional forms are re-exported at `needle.` level."""
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _conv
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _elementwise
from .matmul import *  # noqa: F401,F403
from .matmul import __all__ as _matmul
from .reduction import *  # noqa: F401,F403
from .reduction import __all__ as _reduction
from .shape import *  # noqa: F401,F403
from .shape import __all__ as _shape
from .tuple import *  # noqa: F401,F403
from .tuple import __all__ as _tuple
from ..autograd import Tensor, TensorTuple  # noqa: F401  (the course reaches them here)

__all__ = [*_conv, *_elementwise, *_matmul, *_reduction, *_shape, *_tuple, "Tensor", "TensorTuple"]
