"""Imaging physics: the CT, PET and MRI scanners that turn the phantom into images on their own grids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..ingest.imageio import ImageGeometry, image_from_array
from .geometry import Grid, distance_mm
from .literature import PET
from .phantom import PatientAnatomy, evaluate_on_grid

SCALES = {
    # in-plane size factor, z-extent factor and the slice thicknesses a CT of that scale is reconstructed at;
    # the field of view is physical and fixed by the patient
    "paper": {"xy": 1.0, "z": 1.0, "slice_mm": (1.0, 1.25)},  # diagnostic CT reconstructions
    "quick": {"xy": 0.375, "z": 0.6, "slice_mm": (2.0, 2.5, 3.0)},
}


@dataclass
class CTScan:
    """The CT as written (HU, noisy, artefacts) and its noise-free maps on the same grid."""

    hu: np.ndarray  # int16, z y x
    change_hu: np.ndarray  # |diseased - healthy| after the scanner's blur, noise-free
    healthy_hu: np.ndarray  # the same patient without infection: noise-free, blur and metal artefacts included
    grid: Grid


# In-plane SD (voxels) of the Gaussian that correlates the CT noise (a sharp reconstruction kernel's grain)
CT_NOISE_SIGMA_VOXELS = 0.7


def ct_noise_cell_voxels(sigma_voxels: float = CT_NOISE_SIGMA_VOXELS) -> float:
    """Voxels per independent noise sample of the CT (the noise-equivalent area 4 pi sigma^2 of its filter)."""
    return float(4 * np.pi * sigma_voxels**2)


def ct_grid(rng: np.random.Generator, scale: dict, z_len: float) -> Grid:
    """A 512x512-class (scaled) axial grid covering the limbs over ``z_len`` mm."""
    n = int(round(512 * scale["xy"]))
    px = rng.uniform(0.8, 1.0) * 512 / n
    dz = float(rng.choice(scale["slice_mm"]))
    nz = int(round(z_len / dz)) + 1
    fov = px * n
    return Grid((-fov / 2 + px / 2 + rng.normal(0, 2), -fov / 2 + px / 2 + rng.normal(0, 2), 0.0), (px, px, dz),
                (n, n, nz))


def pet_grid(rng: np.random.Generator, ct: Grid) -> Grid:
    """The PET's own coarser grid, a little longer than the CT and offset from it."""
    px = PET["voxel_mm"].draw(rng)
    dz = rng.uniform(3.0, 4.0)
    fov = rng.uniform(500, 600)
    n = int(fov / px)
    ct_z = ct.spacing[2] * (ct.size[2] - 1)
    z0 = -rng.uniform(10, 20)
    nz = int((ct_z - 2 * z0) / dz) + 1
    return Grid((-fov / 2 + rng.normal(0, 5), -fov / 2 + rng.normal(0, 5), z0), (px, px, dz), (n, n, nz))


def add_metal_streaks(hu: np.ndarray, metal: np.ndarray, spacing_xy: float, rng: np.random.Generator) -> None:
    """Radial streaks and a dark beam-hardening band from the metal, slice by slice, in place."""
    ny, nx = hu.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    for k in np.flatnonzero(metal.any(axis=(1, 2))):
        pts = np.argwhere(metal[k])
        cy, cx = pts.mean(axis=0)
        dy, dx = yy - cy, xx - cx
        r = np.sqrt(dx * dx + dy * dy) * spacing_xy
        ang = np.arctan2(dy, dx)
        field = np.zeros((ny, nx), np.float32)
        amount = min(1.0, len(pts) * spacing_xy**2 / 60.0)
        for _ in range(int(rng.integers(8, 15))):
            a0 = rng.uniform(-np.pi, np.pi)
            width = np.deg2rad(rng.uniform(0.6, 1.8))
            diff = np.angle(np.exp(1j * (ang - a0)))
            sign = 1 if rng.uniform() < 0.45 else -1
            field += sign * rng.uniform(150, 450) * amount * np.exp(-0.5 * (diff / width) ** 2)
        # the band between the two most distant metal points is darkened (photon starvation)
        if len(pts) > 1:
            far = pts[np.argmax(((pts - pts[0]) ** 2).sum(1))]
            near = pts[np.argmax(((pts - far) ** 2).sum(1))]
            axis = np.arctan2(far[0] - near[0], far[1] - near[1])
            diff = np.angle(np.exp(1j * (ang - axis)))
            band = np.exp(-0.5 * (np.minimum(np.abs(diff), np.pi - np.abs(diff)) / np.deg2rad(4)) ** 2)
            field -= 120 * amount * band
        hu[k] += field * np.exp(-r / 90.0) * (r > 3)


def scan_ct(an: PatientAnatomy, grid: Grid, maps: dict[str, np.ndarray], rng: np.random.Generator) -> CTScan:
    """CT from the object's HU maps: reconstruction blur, metal streaks, correlated noise, air outside."""
    blur = (0, 0.6, 0.6)  # partial volume of the reconstruction kernel, in-plane
    hu = ndimage.gaussian_filter(maps["hu"], sigma=blur)
    healthy = ndimage.gaussian_filter(maps["hu_healthy"], sigma=blur)
    change = np.abs(hu - healthy)
    change[maps["metal"]] = 0
    if an.implant is not None:
        # streaks are drawn once and added to the healthy appearance too: a reader recognises them as artefact
        streaks = np.zeros_like(hu)
        add_metal_streaks(streaks, maps["metal"], grid.spacing[0], rng)
        hu += streaks
        healthy += streaks
    sigma = CT_NOISE_SIGMA_VOXELS
    noise = ndimage.gaussian_filter(rng.normal(0, 1, hu.shape).astype(np.float32), sigma=(0, sigma, sigma))
    hu += noise * (an.ct_noise / 0.4)  # the filtered noise has SD ~0.4: scale back to the drawn SD
    air = ~maps["body"] & ~ndimage.binary_dilation(maps["metal"].any(0), iterations=3)[None]
    hu[air] = -1000 + np.clip(noise[air] * 3, -24, 24)
    hu[maps["metal"]] = 3071
    healthy[maps["metal"]] = 3071
    return CTScan(np.clip(np.round(hu), -1024, 3071).astype(np.int16), change.astype(np.float32),
                  healthy.astype(np.float32), grid)


def misalignment_transform(an: PatientAnatomy, center) -> sitk.Euler3DTransform:
    """CT physical point -> PET physical point of the same anatomy (SimpleITK fixed->moving convention)."""
    tr = sitk.Euler3DTransform()
    tr.SetCenter(tuple(float(c) for c in center))
    tr.SetRotation(*[float(np.deg2rad(a)) for a in an.misalignment["angles_deg"]])
    tr.SetTranslation(tuple(an.misalignment["translation_mm"]))
    return tr


def metal_ac_gain(metal: np.ndarray, spacing_zyx, gain: float, decay_mm: float = 5.0) -> np.ndarray:
    """Multiplicative over-correction of activity beside metal by CT-based attenuation correction."""
    d = distance_mm(metal, spacing_zyx, 4 * decay_mm)
    factor = np.ones(metal.shape, np.float32)
    near = np.isfinite(d) & ~metal
    factor[near] += gain * np.exp(-d[near] / decay_mm)
    return factor


def scan_pet(an: PatientAnatomy, grid: Grid, tr: sitk.Euler3DTransform,
             rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image]:
    """(PET as written, the same PET without noise): SUV on the PET's own grid seen through the misalignment.

    Voxel integration by 2x supersampling, attenuation-correction gain beside metal, Gaussian PSF, and
    count noise with variance proportional to the activity, spatially correlated as after OSEM + post-filter.
    """
    inverse = tr.GetInverse()
    matrix = np.array(inverse.GetMatrix()).reshape(3, 3)
    offset = np.array(inverse.GetTranslation()) + np.array(inverse.GetCenter()) - matrix @ np.array(inverse.GetCenter())

    def pet_to_ct(x, y, z):
        return (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2] * z + offset[0],
                matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2] * z + offset[1],
                matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2] * z + offset[2])

    sub = 2
    fine_spacing = tuple(s / sub for s in grid.spacing)
    fine_origin = tuple(grid.origin[i] - grid.spacing[i] / 2 + fine_spacing[i] / 2 for i in range(3))
    fine = Grid(fine_origin, fine_spacing, tuple(n * sub for n in grid.size))
    fields = ("suv", "metal") if an.implant is not None else ("suv",)
    maps = evaluate_on_grid(an, *fine.axes(), fields=fields, mapping=pet_to_ct, margin=25.0)
    activity = maps["suv"]
    if an.implant is not None:
        activity *= metal_ac_gain(maps["metal"], fine.zyx_spacing, PET["metal_ac_gain"].draw(rng))
    sigma_mm = an.pet_fwhm / 2.3548
    activity = ndimage.gaussian_filter(activity, sigma=[sigma_mm / s for s in fine.zyx_spacing])
    nz, ny, nx = (n // sub for n in activity.shape)
    clean = activity.reshape(nz, sub, ny, sub, nx, sub).mean(axis=(1, 3, 5))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, clean.shape).astype(np.float32), sigma=0.8)
    noise /= noise.std() + 1e-12
    pet = np.clip(clean + noise * an.pet_noise * np.sqrt(np.maximum(clean, 0)), 0, None).astype(np.float32)
    on_grid = ImageGeometry.of_array(pet, grid.spacing, grid.origin)
    return image_from_array(pet, on_grid), image_from_array(clean.astype(np.float32), on_grid)


def scan_mri(an: PatientAnatomy, rng: np.random.Generator, ct: Grid) -> sitk.Image:
    """A STIR-like image (fluid/oedema bright, fat suppressed) on its own 1x1x4 mm-ish grid, aligned to CT."""
    px = rng.uniform(0.9, 1.2) * 512 / ct.size[0]
    fov = ct.spacing[0] * ct.size[0] * rng.uniform(0.9, 1.0)
    n = int(fov / px)
    dz = rng.uniform(3.5, 4.5)
    nz = int(an.z_len / dz) + 1
    grid = Grid((-fov / 2, -fov / 2, 0.0), (px, px, dz), (n, n, nz))
    signal = {"muscle": 120, "skin": 150, "fat": 40, "marrow": 35, "cortex": 5, "edema": 320, "inflammation": 280,
              "involved_marrow": 380, "destruction": 380, "abscess": 520, "sinus_tract": 520, "metal": 0}
    t = evaluate_on_grid(an, *grid.axes(), fields=("body", *signal))
    sig = np.zeros(t["body"].shape, np.float32)
    for tissue, value in signal.items():  # later tissues overwrite earlier ones
        sig[t[tissue]] = value
    sig = ndimage.gaussian_filter(sig, sigma=(0, 0.8, 0.8))
    sig = np.abs(sig + rng.normal(0, 12, sig.shape)).astype(np.float32)  # Rician-like magnitude noise
    return image_from_array(sig, ImageGeometry.of_array(sig, grid.spacing, grid.origin))
