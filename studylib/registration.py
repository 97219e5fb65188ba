"""Rigid PET-to-CT registration (Mattes mutual information, multi-resolution) and resampling onto the CT grid."""

from __future__ import annotations

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
        reg.SetMetricSamplingPercentage(sampling, seed)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


def _gradient_stage(fixed, moving, mask, start, seed, iterations, freeze_z=False) -> tuple[sitk.Euler3DTransform, int]:
    reg = _mattes(mask, 0.2, seed)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
                                                 relaxationFactor=0.6)
    if freeze_z:
        # rotations scaled by the squared lever arm (~150 mm); a huge scale keeps z-translation fixed
        reg.SetOptimizerScales([150.0**2] * 3 + [1.0, 1.0, 1e9])
    else:
        reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(start, inPlace=False)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as err:
        raise RegistrationError(f"registration failed: {str(err).strip().splitlines()[-1]}") from err
    composite = sitk.CompositeTransform(out)
    return sitk.Euler3DTransform(composite.GetNthTransform(0)), int(reg.GetOptimizerIteration())


def _z_scan(fixed, moving, mask, start, half_range: float, step: float) -> tuple[sitk.Euler3DTransform, float]:
    """Exhaustive search of the z-translation (the axis limbs constrain least) at full sampling."""
    reg = _mattes(mask, 1.0, 0)
    best = (np.inf, start)
    for dz in np.arange(-half_range, half_range + 1e-6, step):
        candidate = sitk.Euler3DTransform(start)
        params = list(candidate.GetParameters())
        params[5] += float(dz)
        candidate.SetParameters(params)
        reg.SetInitialTransform(candidate)
        value = reg.MetricEvaluate(fixed, moving)
        if value < best[0]:
            best = (value, candidate)
    return best[1], float(best[0])


def register_pet_to_ct(ct: sitk.Image, pet: sitk.Image, mode: str = "rigid", seed: int = 0,
                       iterations: int = 200) -> RegistrationResult:
    """Find the rigid CT->PET transform by Mattes mutual information (``mode='none'``: identity).

    Stages: (1) all six parameters on a body mask, multi-resolution; (2) an exhaustive z-translation scan
    on a bone mask (limbs are nearly translation-invariant along z, and on the body mask the metric is
    biased by partial volume at the outline, while bone ends and joints are sharp in both modalities);
    (3) rotations and in-plane translation again with z held; (4) a fine z scan.
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
    stage1, it1 = _gradient_stage(fixed, moving, body, start, seed, iterations)
    stage2, _ = _z_scan(fixed, moving, bone, stage1, 12.0, 1.5)
    stage3, it3 = _gradient_stage(fixed, moving, body, stage2, seed, iterations, freeze_z=True)
    stage4, _ = _z_scan(fixed, moving, bone, stage3, 3.0, 0.5)
    stage5, it5 = _gradient_stage(fixed, moving, body, stage4, seed + 1, iterations, freeze_z=True)
    final, _ = _z_scan(fixed, moving, bone, stage5, 1.0, 0.25)
    it3 += it5
    metric_after = _mattes(body, 1.0, seed)
    metric_after.SetInitialTransform(final)
    after = metric_after.MetricEvaluate(fixed, moving)
    return RegistrationResult(final, "rigid", float(before), float(after), it1 + it3,
                              "body MI -> bone z-scan -> 2x [body MI (z held) -> finer bone z-scan]")


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
