"""mlctl: one command-line toolchain for the whole machine learning lifecycle.

The library is the product; the ``mlctl`` command is a thin layer over it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
