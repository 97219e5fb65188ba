"""The report's chapters, one module per chapter of ``report/index.qmd``, in the order they appear there."""

from . import (
           abstract,
           calibration,
           claims,
           data,
           limitations,
           methods,
           multirater,
           reproducibility,
           results,
           truth,
)

__all__ = ["abstract", "claims", "methods", "data", "results", "multirater", "truth", "calibration", "limitations",
           "reproducibility"]
