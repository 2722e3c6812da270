"""KerDenSOM, the kernel-density self-organizing map of Xmipp, for scikit-learn."""

from .estimator import KerDenSOM
from .metrics import quantization_error, topographic_error, u_matrix

__all__ = ["KerDenSOM", "quantization_error", "topographic_error", "u_matrix"]
__version__ = "0.1.0"
