"""Rigid PET-to-CT registration (Mattes mutual information, multi-resolution) and resampling onto the CT grid."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


class RegistrationError(RuntimeError):
    """Registration could not run (for example the images do not overlap)."""


@dataclass
class RegistrationResult:
    """A CT->PET rigid transform (SimpleITK fixed->moving convention) and how it was found."""

    transform: sitk.Transform
    mode: str
    metric_before: float | None = None
    metric_after: float | None = None
    iterations: int = 0
    stop_condition: str = ""

    def as_dict(self) -> dict:
        """JSON-friendly record (parameters of the Euler transform, metric values)."""
        tr = self.transform
        return {
            "mode": self.mode,
            "transform_type": tr.GetName(),
            "parameters": list(tr.GetParameters()),
            "fixed_parameters": list(tr.GetFixedParameters()),
            "metric_before": self.metric_before,
            "metric_after": self.metric_after,
            "iterations": self.iterations,
            "stop_condition": self.stop_condition,
        }


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box (min corner, max corner) of an image's voxel centres."""
    size = np.array(image.GetSize())
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    pts = np.array([image.TransformContinuousIndexToPhysicalPoint(c.astype(float).tolist()) for c in corners])
    return pts.min(axis=0), pts.max(axis=0)


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image) -> float:
    """Fraction of the fixed image's bounding box covered by the moving image's bounding box."""
    f0, f1 = physical_bounds(fixed)
    m0, m1 = physical_bounds(moving)
    inter = np.clip(np.minimum(f1, m1) - np.maximum(f0, m0), 0, None)
    extent = np.maximum(f1 - f0, 1e-6)
    return float(np.prod(inter / extent))


def _registration_fixed(ct: sitk.Image, target_spacing: float = 2.0) -> sitk.Image:
    """CT smoothed and resampled to about ``target_spacing`` mm in-plane for a fast metric."""
    spacing = np.array(ct.GetSpacing())
    factor = np.maximum(np.round(target_spacing / spacing), 1).astype(int)
    factor[2] = 1
    image = sitk.Cast(ct, sitk.sitkFloat32)
    image = sitk.Clamp(image, sitk.sitkFloat32, -1000.0, 2000.0)
    if factor.max() > 1:
        image = sitk.SmoothingRecursiveGaussian(image, float(target_spacing / 2))
        image = sitk.Shrink(image, factor.tolist())
    return image


def _mattes(fixed_mask: sitk.Image, sampling: float, seed: int) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if sampling >= 1.0:
        reg.SetMetricSamplingStrategy(reg.NONE)
    else:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # SimpleITK reads seed 0 as "seed from the wall clock": offset it so runs are reproducible
        reg.SetMetricSamplingPercentage(sampling, seed + 1)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


def _gradient_stage(fixed, moving, mask, start, seed, iterations, scales: list[float] | None = None,
                    learning_rate: float = 1.0, shrink=(2, 1), sigmas=(2.0, 0.0)) -> tuple[sitk.Euler3DTransform, int]:
    """One multi-resolution gradient-descent stage; ``scales`` (Euler order: 3 angles, 3 translations)
    default to physical-shift scales, and a huge scale holds a parameter fixed."""
    reg = _mattes(mask, 0.2, seed)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=1e-3, numberOfIterations=iterations,
                                                 relaxationFactor=0.6)
    if scales is None:
        reg.SetOptimizerScalesFromPhysicalShift()
    else:
        reg.SetOptimizerScales(scales)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(start, inPlace=False)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as err:
        raise RegistrationError(f"registration failed: {str(err).strip().splitlines()[-1]}") from err
    composite = sitk.CompositeTransform(out)
    return sitk.Euler3DTransform(composite.GetNthTransform(0)), int(reg.GetOptimizerIteration())


def _z_scan(fixed, moving, mask, start, half_range: float, step: float,
            sampling: float = 0.5) -> tuple[sitk.Euler3DTransform, float]:
    """Exhaustive search of the z-translation (the axis limbs constrain least), refined by a parabola through
    the best step and its neighbours. A fixed sampling seed keeps the same fixed-image points for every shift."""
    reg = _mattes(mask, sampling, 0)
    shifts = np.arange(-half_range, half_range + 1e-6, step)
    values = []
    for dz in shifts:
        reg.SetInitialTransform(_shift_z(start, float(dz)))
        values.append(reg.MetricEvaluate(fixed, moving))
    values = np.asarray(values)
    best = int(np.argmin(values))
    dz = float(shifts[best])
    if 0 < best < len(shifts) - 1:
        left, centre, right = values[best - 1], values[best], values[best + 1]
        curvature = left - 2 * centre + right
        if curvature > 0:
            dz += float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) * step
    return _shift_z(start, dz), float(values[best])


def _shift_z(transform: sitk.Euler3DTransform, dz: float) -> sitk.Euler3DTransform:
    shifted = sitk.Euler3DTransform(transform)
    params = list(shifted.GetParameters())
    params[5] += dz
    shifted.SetParameters(params)
    return shifted


@contextmanager
def itk_threads(threads: int):
    """ITK's default thread count set to ``threads`` inside the block, restored after."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def register_pet_to_ct(ct: sitk.Image, pet: sitk.Image, mode: str = "rigid", seed: int = 0,
                       iterations: int = 200) -> RegistrationResult:
    """Find the rigid CT->PET transform by Mattes mutual information (``mode='none'``: identity); reproducible.

    ITK sums the metric over threads in an order that varies from run to run (parameters moved by ~1e-9, enough
    to change fp16 cache voxels and every model trained after them), so the registration runs on one ITK thread;
    studies prepare patients in parallel processes instead.
    """
    with itk_threads(1):
        return _register_rigid(ct, pet, mode, seed, iterations)


def _register_rigid(ct: sitk.Image, pet: sitk.Image, mode: str, seed: int, iterations: int) -> RegistrationResult:
    """Find the rigid CT->PET transform by Mattes mutual information (``mode='none'``: identity).

    Stages: (1) rotations and x/y translation on a body mask with z held (the outline fixes them robustly);
    (2) an exhaustive z-translation scan on a bone mask (limbs are nearly translation-invariant along z, and on
    the body mask the metric drifts with the limb's taper, while bone ends, joints and marrow are sharp in both
    modalities); (3) rotations and x/y again at that z; (4) a fine z scan refined by a parabola.
    """
    if overlap_fraction(ct, pet) <= 0.0:
        raise RegistrationError("CT and PET have no physical overlap (check origins and directions)")
    if mode == "none":
        return RegistrationResult(sitk.Euler3DTransform(), "none")
    if mode != "rigid":
        raise ValueError(f"unknown registration mode '{mode}' (choose 'none' or 'rigid')")
    fixed = _registration_fixed(ct)
    moving = sitk.Cast(pet, sitk.sitkFloat32)
    body = sitk.Cast(sitk.BinaryDilate(fixed > -500, [3, 3, 1]), sitk.sitkUInt8)
    bone = sitk.Cast(sitk.BinaryDilate(fixed > 250, [4, 4, 2]), sitk.sitkUInt8)
    if sitk.GetArrayViewFromImage(bone).sum() < 50:
        bone = body  # no bone in view: fall back to the body region
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    # PET and CT share the scanner frame: keep the identity and use the initialiser's centre of rotation
    start = sitk.Euler3DTransform()
    start.SetCenter(initial.GetCenter())
    metric_before = _mattes(body, 1.0, seed)
    metric_before.SetInitialTransform(start)
    before = metric_before.MetricEvaluate(fixed, moving)
    lever = 150.0**2  # rotation scale: squared lever arm (mm) of the limbs around the centre
    hold_z = [lever, lever, lever, 1.0, 1.0, 1e9]  # a huge scale holds z-translation fixed
    # (1) rotations and x/y translation on the body outline, z held (the outline's metric drifts along z)
    stage1, it1 = _gradient_stage(fixed, moving, body, start, seed, iterations, hold_z)
    # (2) z: exhaustive scan on the bone mask
    stage2, _ = _z_scan(fixed, moving, bone, stage1, 15.0, 1.5)
    # (3) rotations and x/y again at the new z; (4) finer z scans
    stage3, it3 = _gradient_stage(fixed, moving, body, stage2, seed, iterations, hold_z)
    final, _ = _z_scan(fixed, moving, bone, stage3, 2.0, 0.5)
    metric_after = _mattes(body, 1.0, seed)
    metric_after.SetInitialTransform(final)
    after = metric_after.MetricEvaluate(fixed, moving)
    return RegistrationResult(final, "rigid", float(before), float(after), it1 + it3,
                              "body MI (z held) -> bone z-scan -> body MI (z held) -> fine bone z-scan + parabola")


def resample_to(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
                is_mask: bool = False) -> sitk.Image:
    """Resample onto the reference grid: linear for images, nearest neighbour for masks."""
    transform = transform or sitk.Transform()
    if is_mask:
        return sitk.Resample(image, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.Resample(image, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def target_registration_error(estimated: sitk.Transform, truth: sitk.Transform, point_mm) -> float:
    """Distance (mm) between where two CT->PET transforms send a CT point."""
    a = np.array(estimated.TransformPoint(tuple(float(v) for v in point_mm)))
    b = np.array(truth.TransformPoint(tuple(float(v) for v in point_mm)))
    return float(np.linalg.norm(a - b))


def transform_from_record(record: dict) -> sitk.Euler3DTransform:
    """Rebuild an Euler transform from ``parameters``/``fixed_parameters`` lists."""
    tr = sitk.Euler3DTransform()
    tr.SetFixedParameters(record["fixed_parameters"])
    tr.SetParameters(record["parameters"])
    return tr
