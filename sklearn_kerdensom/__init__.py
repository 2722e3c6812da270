"""KerDenSOM, the kernel-density self-organizing map of Xmipp, for scikit-learn."""

from .averaging import ClassAverager, class_averages
from .estimator import KerDenSOM
from .masking import MaskVectorizer, circular_mask
from .metrics import quantization_error, topographic_error, u_matrix

__all__ = [
    "ClassAverager",
    "KerDenSOM",
    "MaskVectorizer",
    "circular_mask",
    "class_averages",
    "quantization_error",
    "topographic_error",
    "u_matrix",
]
__version__ = "0.1.0"
