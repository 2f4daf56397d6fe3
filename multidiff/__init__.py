"""multidiff: diffusion models for audio, images and 3D point clouds on one modality-agnostic core."""
__version__ = "0.1.0"
from . import samplers, schedules
from .sampling import sample
from . import pilot_steps
