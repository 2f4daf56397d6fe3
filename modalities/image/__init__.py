"""Images: class folders (PNG, JPEG...), MNIST-style IDX files or synthetic shapes; a 2D UNet; PNG output."""
from .modality import ImageModality

__all__ = ["ImageModality"]
