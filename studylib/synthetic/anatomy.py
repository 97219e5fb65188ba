"""Healthy anatomy of the phantom: two lower limbs (thigh or leg) with their long bones, in CT-frame mm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .literature import CT, PET


@dataclass
class TissueValues:
    """One value (HU or SUV) per healthy tissue class."""

    fat: float
    muscle: float
    skin: float
    cortex: float
    marrow: float
    cancellous: float


def sample_tissue_hu(rng: np.random.Generator) -> TissueValues:
    """Healthy CT attenuation of one patient."""
    return TissueValues(fat=CT["fat_hu"].draw(rng), muscle=CT["muscle_hu"].draw(rng), skin=CT["skin_hu"].draw(rng),
                        cortex=CT["cortex_hu"].draw(rng), marrow=CT["marrow_hu"].draw(rng),
                        cancellous=CT["cancellous_hu"].draw(rng))


def sample_tissue_suv(rng: np.random.Generator) -> TissueValues:
    """Healthy FDG uptake of one patient."""
    muscle = PET["muscle_suv"].draw(rng)
    return TissueValues(fat=PET["fat_suv"].draw(rng), muscle=muscle, skin=muscle, cortex=float(rng.uniform(0.3, 0.5)),
                        marrow=PET["marrow_suv"].draw(rng), cancellous=PET["cancellous_suv"].draw(rng))


@dataclass
class Limb:
    """One limb as an elliptic cylinder that tapers along z with a muscle-belly bulge."""

    center: tuple[float, float]
    radii: tuple[float, float]
    taper: float
    bulge: float
    bulge_period: float
    bulge_phase: float

    def scale_at(self, z: np.ndarray, z_len: float) -> np.ndarray:
        """Radius multiplier along z: limb outlines change along z as real limbs do."""
        return (1 - self.taper * z / z_len) * (1 + self.bulge * np.sin(2 * np.pi * z / self.bulge_period + self.bulge_phase))


@dataclass
class Bone:
    """A long bone as an elliptic tube along z with a metaphyseal flare at one end and a joint beyond it."""

    center: tuple[float, float]
    radii: tuple[float, float]
    cortex: float
    flare_end: float
    flare_gain: float
    joint_at: float = 2.0  # relative z of the joint space (outside [0, 1]: not in the scan)
    joint_gap: float = 5.0

    def scale_at(self, z: np.ndarray, z_len: float) -> np.ndarray:
        """Radius multiplier along z (metaphyseal flare)."""
        t = z / z_len if self.flare_end > 0.5 else 1 - z / z_len
        return 1 + self.flare_gain * np.clip((t - 0.7) / 0.3, 0, 1) ** 2

    def rho(self, x, y, z, z_len: float) -> tuple[np.ndarray, np.ndarray]:
        """(normalised radius, outer radius in mm along the ray) of points relative to the bone."""
        s = self.scale_at(z, z_len)
        dx = (x - self.center[0]) / (self.radii[0] * s)
        dy = (y - self.center[1]) / (self.radii[1] * s)
        return np.sqrt(dx * dx + dy * dy), np.minimum(self.radii[0], self.radii[1]) * s


def sample_limbs(rng: np.random.Generator, site: str) -> list[Limb]:
    """Right and left limb (x < 0 first) of a thigh (femur site) or a lower leg (tibia site)."""
    thigh = site == "femur"
    base = rng.uniform(68, 88) if thigh else rng.uniform(45, 60)
    taper = rng.uniform(0.12, 0.25)
    offset = rng.uniform(85, 105) if thigh else rng.uniform(70, 85)
    limbs = []
    for sign in (-1, 1):
        limbs.append(Limb(
            center=(float(sign * offset + rng.normal(0, 3)), float(rng.normal(0, 4))),
            radii=(float(base * rng.uniform(0.95, 1.05)), float(base * rng.uniform(0.85, 0.95))),
            taper=float(taper), bulge=float(rng.uniform(0.05, 0.1)), bulge_period=float(rng.uniform(180, 260)),
            bulge_phase=float(rng.uniform(0, 2 * np.pi)),
        ))
    return limbs


def sample_bones(rng: np.random.Generator, site: str, limb: Limb) -> list[Bone]:
    """The long bones of one limb (femur, or tibia + fibula) sharing a joint near the flared end."""
    cx, cy = limb.center
    flare_end = float(rng.uniform())
    if site == "femur":
        r = rng.uniform(12, 16)
        bones = [Bone((cx + rng.normal(0, 3), cy + rng.normal(-2, 3)), (r, r * rng.uniform(0.92, 1.05)),
                      rng.uniform(3.5, 6.0), flare_end, rng.uniform(0.3, 0.5))]
    else:
        tib_r = rng.uniform(13, 17)
        lateral = np.sign(cx)
        bones = [
            Bone((cx - lateral * 6 + rng.normal(0, 2), cy - rng.uniform(10, 16)), (tib_r, tib_r * rng.uniform(0.75, 0.9)),
                 rng.uniform(3.0, 5.0), flare_end, rng.uniform(0.3, 0.5)),
            Bone((cx + lateral * rng.uniform(20, 26), cy + rng.uniform(4, 10)), (rng.uniform(6, 8),) * 2,
                 rng.uniform(2.0, 3.0), flare_end, 0.1),
        ]
    joint_at = float(rng.uniform(0.9, 0.95))
    gap = float(rng.uniform(4, 7))
    for bone in bones:
        bone.center = tuple(float(c) for c in bone.center)
        bone.radii = tuple(float(r) for r in bone.radii)
        bone.cortex, bone.flare_gain = float(bone.cortex), float(bone.flare_gain)
        bone.joint_at = joint_at if bone.flare_end > 0.5 else 1 - joint_at
        bone.joint_gap = gap
    return bones
