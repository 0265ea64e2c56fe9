"""robustlens: adversarial robustness as a lens on deep classifiers."""

from .classifier import Classifier
from .errors import ConfigError, InputError, LabelError, RobustLensError, RobustLensWarning, UnsafeLoadError
from .results import Result

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "ConfigError",
    "InputError",
    "LabelError",
    "Result",
    "RobustLensError",
    "RobustLensWarning",
    "UnsafeLoadError",
    "__version__",
]
