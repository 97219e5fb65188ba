"""Shapes and grids of the phantom in physical millimetres: irregular blobs, image grids, distance bands."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass
class Blob:
    """An irregular ellipsoid: inside where the normalised radius is below a harmonic boundary."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    harmonics: list[tuple[float, int, float, int, float]] = field(default_factory=list)

    def normalized_radius(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Normalised radius divided by the irregular boundary (inside where < 1)."""
        dx = (x - self.center[0]) / (self.radii[0] * scale)
        dy = (y - self.center[1]) / (self.radii[1] * scale)
        dz = (z - self.center[2]) / (self.radii[2] * scale)
        rho = np.sqrt(dx * dx + dy * dy + dz * dz)
        if not self.harmonics:
            return rho
        theta = np.arctan2(dy, dx)
        phi = np.arccos(np.clip(dz / np.maximum(rho, 1e-6), -1, 1))
        boundary = np.ones_like(rho)
        for amp, m, alpha, n, beta in self.harmonics:
            boundary += amp * np.sin(m * theta + alpha) * np.sin(n * phi + beta)
        return rho / boundary

    def reach(self, scale: float = 1.0) -> float:
        """A radius (mm) that bounds the blob."""
        return max(self.radii) * scale * (1 + sum(abs(h[0]) for h in self.harmonics))


def random_blob(rng: np.random.Generator, center, radii, roughness: float = 0.18) -> Blob:
    """A blob with three random low-order harmonics of the given roughness."""
    harmonics = [
        (float(rng.uniform(0.3, 1.0) * roughness), int(rng.integers(1, 5)), float(rng.uniform(0, 2 * np.pi)),
         int(rng.integers(1, 4)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(3)
    ]
    return Blob(tuple(float(c) for c in center), tuple(float(r) for r in radii), harmonics)


def blob_field(blob: Blob, x, y, z, scale: float = 1.0) -> np.ndarray:
    """Normalised radius of ``blob`` at the points, evaluated only near the blob (inf elsewhere)."""
    x, y, z = np.broadcast_arrays(x, y, z)
    reach = blob.reach(scale)
    near = (np.abs(x - blob.center[0]) < reach) & (np.abs(y - blob.center[1]) < reach)
    near &= np.abs(z - blob.center[2]) < reach
    out = np.full(x.shape, np.inf, dtype=np.float32)
    if near.any():
        out[near] = blob.normalized_radius(x[near], y[near], z[near], scale)
    return out


@dataclass
class Grid:
    """An axis-aligned image grid: origin and spacing in mm, size as (x, y, z)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    size: tuple[int, int, int]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical coordinates of voxel centres along x, y, z."""
        return tuple(self.origin[i] + self.spacing[i] * np.arange(self.size[i], dtype=np.float32) for i in range(3))

    def as_dict(self) -> dict:
        """JSON-friendly description."""
        return {"origin": list(self.origin), "spacing": list(self.spacing), "size": list(self.size)}

    @property
    def zyx_spacing(self) -> tuple[float, float, float]:
        """Spacing in array (z, y, x) order."""
        return self.spacing[2], self.spacing[1], self.spacing[0]


def bounding_box(mask: np.ndarray, margin_voxels) -> tuple[slice, ...] | None:
    """The bounding box of ``mask`` grown by ``margin_voxels`` per axis (None for an empty mask)."""
    if not mask.any():
        return None
    index = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - m, 0), min(int(i.max()) + m + 1, n))
                 for i, m, n in zip(index, margin_voxels, mask.shape))


def distance_mm(mask: np.ndarray, spacing_zyx, reach_mm: float) -> np.ndarray:
    """Distance (mm) to ``mask`` for voxels within ``reach_mm`` of it; inf further away."""
    out = np.full(mask.shape, np.inf, np.float32)
    box = bounding_box(mask, [int(np.ceil(reach_mm / s)) + 1 for s in spacing_zyx])
    if box is None:
        return out
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing_zyx)
    return out

