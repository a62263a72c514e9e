"""Typed exceptions raised by the ROS-free core.

The ROS node catches :class:`AmodalSegError` subclasses, logs them (throttled)
and keeps running; nothing in the core should raise a bare ``Exception``.
"""
from __future__ import annotations


class AmodalSegError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(AmodalSegError, ValueError):
    """An input array / message / file has the wrong shape, dtype, size or content."""


class MaskEncodingError(InvalidInputError):
    """A mask or its RLE encoding is malformed (wrong size, counts not summing to h*w)."""


class ConfigError(AmodalSegError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DatasetError(AmodalSegError):
    """A dataset / annotation file is missing, unreadable or malformed."""


class CheckpointError(AmodalSegError):
    """A model checkpoint is missing, corrupt, or does not match the model config."""


class GeometryError(AmodalSegError, ValueError):
    """Invalid geometry: a non-rigid transform, zero focal length, etc."""


class EmptyInputError(InvalidInputError):
    """An input that must hold data is empty (e.g. a cloud with no finite point)."""


class AssetError(InvalidInputError):
    """A 3-D asset (catalogue model, texture, class-map row) is missing, unknown or unreadable.

    The message always names the asset (catalogue id or procedural id) and, where known,
    the file inside its library.
    """

    def __init__(self, asset_id: str, message: str):
        self.asset_id = asset_id
        self.detail = message
        super().__init__(f"asset {asset_id!r}: {message}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument __init__
        return (type(self), (self.asset_id, self.detail))
