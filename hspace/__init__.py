"""hspace: unsupervised discovery of interpretable directions in the h-space of diffusion models."""
__version__ = "0.1.0"

from .backends import HSpaceModel, load_model, save_model  # noqa: E402
from .directions import ShiftBlock  # noqa: E402
from .probe import probe_liveness  # noqa: E402
from .sampling import invert, sample  # noqa: E402
from .schedule import uniform_timesteps  # noqa: E402

__all__ = ["HSpaceModel", "ShiftBlock", "invert", "load_model", "probe_liveness", "sample", "save_model", "uniform_timesteps"]
