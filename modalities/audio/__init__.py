"""Audio clips (spoken digits, tones) for multidiff: see ``modality.AudioModality``."""
from .modality import AudioModality

__all__ = ["AudioModality"]
