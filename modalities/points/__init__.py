"""3-D point clouds: meshes or point files -> normalised (N, 3) clouds -> a point transformer."""
from .modality import PointsEncoder, PointsModality

__all__ = ["PointsModality", "PointsEncoder"]
