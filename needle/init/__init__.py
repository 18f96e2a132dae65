"""Initializers (COURSE_API.md section 5)."""
from .init_basic import *  # noqa: F401,F403
from .init_basic import __all__ as _basic
from .init_initializers import *  # noqa: F401,F403
from .init_initializers import __all__ as _initializers

__all__ = [*_basic, *_initializers]
