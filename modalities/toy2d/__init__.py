"""Toy modality: 2-D points from a Gaussian mixture, for testing the engine without real data."""
from .modality import Toy2DModality

__all__ = ["Toy2DModality"]
