"""Deterministic synthetic PET-CT osteomyelitis cohort with two rater styles (the embedded default input).

Each patient is an analytic phantom of both lower limbs defined in physical millimetres, so the same
anatomy can be evaluated on any grid: the CT grid (HU, metal streaks, noise, partial volume), a fine PET
grid seen through a small rigid misalignment (SUV, scanner PSF, voxel integration, count noise), and an
optional STIR-like MRI grid. The infected region (``truth``) is known exactly; two simulated readers
contour it in their own styles (``label_a`` broad/sensitive, ``label_b`` core/specific) slice by slice.

Nothing here encodes an expected segmentation score: the physics and reader models are stated in
``ASSUMPTIONS`` and in each patient's ``meta.json``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .cohort import write_cohort_json
from .imageio import image_from_array, write_image

ASSUMPTIONS = {
    "anatomy": "both lower limbs as elliptic cylinders tapering along z: skin 2 mm (30 HU), subcutaneous fat "
    "(-100 HU, thickness by habitus), muscle (45 HU), femur or tibia+fibula with a 1200-1800 HU cortex and "
    "fatty marrow; metaphyseal flare at one end",
    "infection": "one focus (25%: two) on the affected bone: lytic cortical/medullary destruction, marrow "
    "involvement, optional sequestrum and periosteal reaction, optional soft-tissue abscess with a rim, "
    "surrounding edema a few HU below muscle; truth = destruction + involved marrow + sequestrum + abscess",
    "pet": "SUV: muscle 0.6-1.0, fat 0.2-0.4, marrow 1.0-1.5, focus SUVmax 3-12 (second focus may be low-grade), "
    "abscess ring-like with a cold centre, edema mild; PSF FWHM 5-7 mm, 2x supersampled voxel integration, "
    "Gaussian count noise with variance proportional to SUV, own ~4 mm grid, rigid misalignment of a few mm/deg",
    "confounders": "sterile implant-associated or post-operative inflammation (uptake, no destruction), "
    "physiological hotspot away from bone (lymph node), healed callus (sclerosis, no uptake)",
    "metal": "plate+screws or intramedullary nail in about a third, 3071 HU, radial streaks and a dark "
    "beam-hardening band",
    "rater_a": "reader A thresholds the registered PET at a low fraction (20-30%) of the focus SUVmax, keeps "
    "regions touching the focus, adds the edematous margin and the infected region; may include adjacent "
    "sterile inflammation; contours slice by slice with 1.5-3 mm boundary jitter",
    "rater_b": "reader B keeps destruction/abscess voxels of the truth where the registered PET exceeds "
    "45-55% of SUVmax, slightly eroded; skips low-grade foci (SUVmax < 4); 0.5-1.2 mm boundary jitter",
}

SCALES = {
    # in-plane size factor, z-extent factor; the field of view is physical and fixed by the patient
    "paper": {"xy": 1.0, "z": 1.0},
    "quick": {"xy": 0.375, "z": 0.6},
}


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


def _random_blob(rng: np.random.Generator, center, radii, roughness: float = 0.18) -> Blob:
    harmonics = [
        (float(rng.uniform(0.3, 1.0) * roughness), int(rng.integers(1, 5)), float(rng.uniform(0, 2 * np.pi)),
         int(rng.integers(1, 4)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(3)
    ]
    return Blob(tuple(float(c) for c in center), tuple(float(r) for r in radii), harmonics)


def _blob_field(blob: Blob, x, y, z, scale: float = 1.0) -> np.ndarray:
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
class Bone:
    """A long bone as an elliptic tube along z with a flare at one end."""

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


@dataclass
class PatientAnatomy:
    """All random parameters of one synthetic patient (physical mm, CT frame)."""

    patient_id: str
    site: str
    side: int
    z_len: float
    legs: list[dict]
    fat: float
    hu: dict
    suv: dict
    bones: list[Bone]
    foci: list[dict]
    implant: dict | None
    confounders: list[dict]
    misalignment: dict
    pet_fwhm: float
    pet_noise: float
    ct_noise: float
    rater: dict


def _leg_geometry(rng, site: str, z_len: float):
    thigh = site == "femur"
    base = rng.uniform(68, 88) if thigh else rng.uniform(45, 60)
    taper = rng.uniform(0.12, 0.25)
    offset = rng.uniform(85, 105) if thigh else rng.uniform(70, 85)
    legs = []
    for sign in (-1, 1):
        legs.append({
            "center": (sign * offset + rng.normal(0, 3), rng.normal(0, 4)),
            "radii": (base * rng.uniform(0.95, 1.05), base * rng.uniform(0.85, 0.95)),
            "taper": taper,
            "bulge": float(rng.uniform(0.05, 0.1)),
            "bulge_period": float(rng.uniform(180, 260)),
            "bulge_phase": float(rng.uniform(0, 2 * np.pi)),
        })
    return legs


def _bones_for_leg(rng, site: str, leg: dict) -> list[Bone]:
    bones = _long_bones(rng, site, leg)
    joint_at = float(rng.uniform(0.9, 0.95))
    gap = float(rng.uniform(4, 7))
    for bone in bones:
        bone.joint_at = joint_at if bone.flare_end > 0.5 else 1 - joint_at
        bone.joint_gap = gap
    return bones


def _long_bones(rng, site: str, leg: dict) -> list[Bone]:
    cx, cy = leg["center"]
    flare_end = float(rng.uniform())
    if site == "femur":
        r = rng.uniform(12, 16)
        return [Bone((cx + rng.normal(0, 3), cy + rng.normal(-2, 3)), (r, r * rng.uniform(0.92, 1.05)),
                     rng.uniform(3.5, 6.0), flare_end, rng.uniform(0.3, 0.5))]
    tib_r = rng.uniform(13, 17)
    lateral = np.sign(cx)
    return [
        Bone((cx - lateral * 6 + rng.normal(0, 2), cy - rng.uniform(10, 16)), (tib_r, tib_r * rng.uniform(0.75, 0.9)),
             rng.uniform(3.0, 5.0), flare_end, rng.uniform(0.3, 0.5)),
        Bone((cx + lateral * rng.uniform(20, 26), cy + rng.uniform(4, 10)), (rng.uniform(6, 8),) * 2,
             rng.uniform(2.0, 3.0), flare_end, 0.1),
    ]


def _make_focus(rng, bone: Bone, z_len: float, z0: float, grade: str) -> dict:
    theta = float(rng.uniform(0, 2 * np.pi))
    r_b = min(bone.radii)
    direction = np.array([np.cos(theta), np.sin(theta)])
    surface = np.array(bone.center) + direction * r_b
    size = rng.uniform(0.7, 1.0) if grade == "low" else rng.uniform(0.9, 1.4)
    destruction = _random_blob(
        rng, (*(surface - direction * r_b * 0.35), z0),
        (rng.uniform(8, 13) * size, rng.uniform(8, 13) * size, rng.uniform(10, 22) * size), 0.22)
    focus = {
        "grade": grade,
        "theta": theta,
        "suvmax": float(rng.uniform(2.5, 3.8) if grade == "low" else rng.uniform(4.0, 12.0)),
        "destruction": destruction,
        "marrow_extent": float(destruction.radii[2] * rng.uniform(1.2, 1.8)),
        "sequestrum": None,
        "abscess": None,
        "periosteal": bool(rng.uniform() < 0.5),
    }
    if rng.uniform() < 0.4:
        focus["sequestrum"] = _random_blob(
            rng, (*(surface - direction * r_b * 0.2), z0 + rng.normal(0, 3)), (rng.uniform(2, 3.5),) * 3, 0.1)
    if rng.uniform() < (0.65 if grade == "high" else 0.2):
        ra = rng.uniform(7, 14) * size
        focus["abscess"] = _random_blob(
            rng, (*(surface + direction * ra * 0.9), z0 + rng.normal(0, 4)),
            (ra, ra * rng.uniform(0.7, 1.0), ra * rng.uniform(1.0, 1.6)), 0.15)
        focus["abscess_rim"] = float(rng.uniform(2.0, 3.5))
    main = focus["abscess"] or destruction
    edema_center = (np.array(destruction.center) + np.array(main.center)) / 2
    focus["edema"] = _random_blob(
        rng, edema_center, tuple(max(destruction.radii[i], main.radii[i]) + rng.uniform(6, 12) for i in range(3)), 0.2)
    return focus


def sample_anatomy(rng: np.random.Generator, patient_id: str, z_len: float) -> PatientAnatomy:
    """Draw one patient's anatomy, infection, implant, confounders and acquisition parameters."""
    site = str(rng.choice(["femur", "tibia"]))
    legs = _leg_geometry(rng, site, z_len)
    side = int(rng.integers(0, 2))
    bones = [b for leg in legs for b in _bones_for_leg(rng, site, leg)]
    per_leg = len(bones) // 2
    affected = bones[side * per_leg]  # femur or tibia of the affected leg
    hu = {
        "fat": rng.uniform(-110, -90), "muscle": rng.uniform(40, 55), "skin": rng.uniform(20, 40),
        "cortex": rng.uniform(1200, 1800), "marrow": rng.uniform(-40, 40), "cancellous": rng.uniform(200, 320),
    }
    suv = {"fat": rng.uniform(0.2, 0.4), "muscle": rng.uniform(0.6, 1.0), "marrow": rng.uniform(1.0, 1.5),
           "cortex": rng.uniform(0.3, 0.5), "skin": rng.uniform(0.6, 1.0), "cancellous": rng.uniform(1.6, 2.2)}
    z0 = rng.uniform(0.3, 0.7) * z_len
    foci = [_make_focus(rng, affected, z_len, z0, "high")]
    if rng.uniform() < 0.25:
        z1 = z0 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.3) * z_len
        foci.append(_make_focus(rng, affected, z_len, float(np.clip(z1, 0.12 * z_len, 0.88 * z_len)),
                                "low" if rng.uniform() < 0.6 else "high"))
    implant = None
    u = rng.uniform()
    if u < 0.34:
        kind = "plate" if rng.uniform() < 0.55 else "nail"
        implant = {"kind": kind, "bone": side * per_leg, "theta": float(foci[0]["theta"] + rng.normal(0, 0.6)),
                   "z_range": sorted([float(z0 - rng.uniform(40, 80)), float(z0 + rng.uniform(40, 80))]),
                   "screw_step": float(rng.uniform(14, 20))}
    confounders: list[dict] = []
    if implant is not None and rng.uniform() < 0.6 or implant is None and rng.uniform() < 0.25:
        # sterile inflammation along the implant or a post-operative scar: uptake without destruction
        b = affected
        theta = float(rng.uniform(0, 2 * np.pi)) if implant is None else implant["theta"] + rng.normal(0, 0.4)
        dist = min(b.radii) + rng.uniform(6, 14)
        zc = (implant["z_range"][0] + rng.uniform(5, 20)) if implant else z0 + rng.choice([-1, 1]) * rng.uniform(35, 60)
        center = (b.center[0] + dist * np.cos(theta), b.center[1] + dist * np.sin(theta), float(np.clip(zc, 10, z_len - 10)))
        confounders.append({"kind": "sterile_inflammation", "suv": float(rng.uniform(2.2, 4.0)),
                            "blob": _random_blob(rng, center, (rng.uniform(6, 10), rng.uniform(6, 10), rng.uniform(10, 20)))})
    if rng.uniform() < 0.35:
        leg = legs[int(rng.integers(0, 2))]
        ang = rng.uniform(0, 2 * np.pi)
        rr = rng.uniform(0.55, 0.75)
        center = (leg["center"][0] + rr * leg["radii"][0] * np.cos(ang), leg["center"][1] + rr * leg["radii"][1] * np.sin(ang),
                  float(rng.uniform(0.15, 0.85) * z_len))
        confounders.append({"kind": "physiological_hotspot", "suv": float(rng.uniform(3.0, 6.0)),
                            "blob": _random_blob(rng, center, (rng.uniform(4, 7),) * 3, 0.1)})
    if rng.uniform() < 0.3:
        b = bones[int(rng.integers(0, len(bones)))]
        theta = float(rng.uniform(0, 2 * np.pi))
        zc = float(rng.uniform(0.15, 0.85) * z_len)
        center = (b.center[0] + min(b.radii) * np.cos(theta), b.center[1] + min(b.radii) * np.sin(theta), zc)
        confounders.append({"kind": "healed_callus", "hu": float(rng.uniform(1600, 1950)),
                            "blob": _random_blob(rng, center, (rng.uniform(5, 8), rng.uniform(5, 8), rng.uniform(12, 25)))})
    misalignment = {
        "angles_deg": [float(v) for v in rng.uniform(-3, 3, size=3)],
        "translation_mm": [float(v) for v in rng.uniform(-5, 5, size=3)],
    }
    rater = {
        "a_threshold": float(rng.uniform(0.20, 0.30)), "a_jitter_mm": float(rng.uniform(1.5, 3.0)),
        "a_includes_inflammation": bool(rng.uniform() < 0.5),
        "b_threshold": float(rng.uniform(0.45, 0.55)), "b_jitter_mm": float(rng.uniform(0.5, 1.2)),
        "b_skips_low_grade": True,
    }
    return PatientAnatomy(
        patient_id=patient_id, site=site, side=side, z_len=z_len, legs=legs, fat=float(rng.uniform(6, 25)),
        hu={k: float(v) for k, v in hu.items()}, suv={k: float(v) for k, v in suv.items()}, bones=bones, foci=foci,
        implant=implant, confounders=confounders, misalignment=misalignment,
        pet_fwhm=float(rng.uniform(5, 7)), pet_noise=float(rng.uniform(0.08, 0.16)),
        ct_noise=float(rng.uniform(10, 18)), rater=rater,
    )


def _tissues(an: PatientAnatomy, x, y, z) -> dict[str, np.ndarray]:
    """Boolean tissue maps and continuous fields of the phantom at physical points (any broadcastable shape)."""
    x, y, z = np.broadcast_arrays(x, y, z)
    zc = np.clip(z, 0, an.z_len)
    body = np.zeros(x.shape, bool)
    muscle_space = np.zeros(x.shape, bool)
    skin = np.zeros(x.shape, bool)
    for leg in an.legs:
        # linear taper plus a muscle-belly bulge: the limb outline changes along z as real limbs do
        s = (1 - leg["taper"] * zc / an.z_len) * (1 + leg["bulge"] * np.sin(2 * np.pi * zc / leg["bulge_period"] + leg["bulge_phase"]))
        a, b = leg["radii"][0] * s, leg["radii"][1] * s
        dx, dy = x - leg["center"][0], y - leg["center"][1]
        rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
        inside = rho < 1
        body |= inside
        skin |= inside & (rho > 1 - 2.0 / np.minimum(a, b))
        ma, mb = a - an.fat - 2, b - an.fat * 0.8 - 2
        muscle_space |= inside & (np.sqrt((dx / ma) ** 2 + (dy / mb) ** 2) < 1)
    cortex = np.zeros(x.shape, bool)
    marrow = np.zeros(x.shape, bool)
    cancellous = np.zeros(x.shape, bool)
    bone_rho = {}
    for i, bone in enumerate(an.bones):
        rho, r_mm = bone.rho(x, y, zc, an.z_len)
        bone_rho[i] = (rho, r_mm)
        # the joint space beyond the flared end (knee or ankle): a 4-7 mm gap with no bone
        t_rel = z / an.z_len
        joint = np.abs(t_rel - bone.joint_at) * an.z_len < bone.joint_gap / 2
        outer = (rho < 1) & body & ~joint
        inner = (rho < 1 - bone.cortex / r_mm) & ~joint
        cortex |= outer & ~inner
        marrow |= inner & body
        cancellous |= inner & body & (bone.scale_at(zc, an.z_len) > 1.12)
    t = {"body": body, "skin": skin, "muscle": muscle_space & ~skin, "cortex": cortex, "marrow": marrow,
         "cancellous": cancellous}
    t["fat"] = body & ~muscle_space & ~skin
    bone = cortex | marrow
    soft = body & ~bone
    for key in ("destruction", "involved_marrow", "sequestrum", "abscess", "abscess_rim", "edema", "periosteal",
                "inflammation", "hotspot", "callus", "metal"):
        t[key] = np.zeros(x.shape, bool)
    t["focus_uptake"] = np.zeros(x.shape, np.float32)
    t["inflammation_suv"] = np.zeros(x.shape, np.float32)
    t["hotspot_suv"] = np.zeros(x.shape, np.float32)
    t["callus_hu"] = np.zeros(x.shape, np.float32)
    t["focus_id"] = np.zeros(x.shape, np.uint8)  # which focus owns an infected voxel (1-based)
    t["edema_id"] = np.zeros(x.shape, np.uint8)
    affected = an.bones[an.side * (len(an.bones) // 2)]
    rho_aff, r_aff = bone_rho[an.side * (len(an.bones) // 2)]
    for number, focus in enumerate(an.foci, start=1):
        owned = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"]
        d = _blob_field(focus["destruction"], x, y, z)
        destroyed = (d < 1) & bone
        t["destruction"] |= destroyed
        ang = np.arctan2(y - affected.center[1], x - affected.center[0])
        sector = np.cos(ang - focus["theta"]) > -0.2
        dz = np.abs(z - focus["destruction"].center[2])
        involved = marrow & (rho_aff < 1) & (dz < focus["marrow_extent"]) & sector
        t["involved_marrow"] |= involved
        uptake = np.where(destroyed, focus["suvmax"] * (0.6 + 0.4 * np.clip(1 - d * d, 0, 1)), 0)
        uptake = np.maximum(uptake, np.where(involved, 0.55 * focus["suvmax"] * np.exp(-dz / focus["marrow_extent"]), 0))
        if focus["sequestrum"] is not None:
            seq = (_blob_field(focus["sequestrum"], x, y, z) < 1) & (destroyed | involved)
            t["sequestrum"] |= seq
            uptake = np.where(seq, 0.3, uptake)
        if focus["abscess"] is not None:
            da = _blob_field(focus["abscess"], x, y, z)
            rim_frac = focus["abscess_rim"] / min(focus["abscess"].radii)
            abscess = (da < 1) & body & ~bone
            rim = abscess & (da > 1 - rim_frac)
            t["abscess"] |= abscess
            t["abscess_rim"] |= rim
            # ring-like uptake: hot rim, cold necrotic centre
            uptake = np.maximum(uptake, np.where(rim, 0.9 * focus["suvmax"], np.where(abscess, 0.5, 0)))
        if focus["periosteal"]:
            shell = (rho_aff >= 1) & (rho_aff < 1 + 2.5 / r_aff) & (dz < focus["destruction"].radii[2] * 1.3) & sector & body
            t["periosteal"] |= shell
            uptake = np.maximum(uptake, np.where(shell, 0.35 * focus["suvmax"], 0))
        de = _blob_field(focus["edema"], x, y, z)
        edema = (de < 1) & soft
        t["edema"] |= edema
        uptake = np.maximum(uptake, np.where(edema, (1.2 + 0.12 * focus["suvmax"]) * np.clip(1.3 - de, 0, 1), 0))
        t["focus_uptake"] = np.maximum(t["focus_uptake"], uptake.astype(np.float32))
        now = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"]
        t["focus_id"][now & ~owned] = number
        t["edema_id"][edema & (t["edema_id"] == 0)] = number
    for conf in an.confounders:
        inside = (_blob_field(conf["blob"], x, y, z) < 1) & body
        if conf["kind"] == "sterile_inflammation":
            t["inflammation"] |= inside & soft
            t["inflammation_suv"] = np.where(inside & soft, conf["suv"], t["inflammation_suv"])
        elif conf["kind"] == "physiological_hotspot":
            t["hotspot"] |= inside & soft
            t["hotspot_suv"] = np.where(inside & soft, conf["suv"], t["hotspot_suv"])
        else:
            rho_all = np.min(np.stack([bone_rho[i][0] for i in bone_rho]), axis=0)
            callus = inside & (rho_all < 1.35)
            t["callus"] |= callus
            t["callus_hu"] = np.where(callus, conf["hu"], t["callus_hu"])
    if an.implant is not None:
        t["metal"] = _implant_mask(an, x, y, z, bone_rho)
    t["truth"] = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"]
    t["suv"] = _suv_map(an, t)
    return t


def _implant_mask(an: PatientAnatomy, x, y, z, bone_rho) -> np.ndarray:
    imp = an.implant
    bone = an.bones[imp["bone"]]
    rho, r_mm = bone_rho[imp["bone"]]
    z0, z1 = imp["z_range"]
    in_z = (z > z0) & (z < z1)
    dx, dy = x - bone.center[0], y - bone.center[1]
    if imp["kind"] == "nail":
        return in_z & (np.sqrt(dx * dx + dy * dy) < 5.0)
    ux, uy = np.cos(imp["theta"]), np.sin(imp["theta"])
    radial = dx * ux + dy * uy  # along the screw axis
    tangential = -dx * uy + dy * ux
    plate = in_z & (radial > r_mm + 0.5) & (radial < r_mm + 4.5) & (np.abs(tangential) < 7)
    screw_phase = np.mod(z - z0, imp["screw_step"])
    screws = in_z & (np.abs(screw_phase - imp["screw_step"] / 2) < 2.25) & (np.abs(tangential) < 2.25)
    screws &= (radial > -r_mm * 1.05) & (radial < r_mm + 4.5)
    return plate | screws


def _ct_hu(an: PatientAnatomy, t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    hu = np.full(t["body"].shape, -1000.0, np.float32)
    h = an.hu
    hu[t["fat"]] = h["fat"]
    hu[t["skin"]] = h["skin"]
    hu[t["muscle"]] = h["muscle"]
    hu[t["marrow"]] = h["marrow"]
    hu[t["cancellous"]] = h["cancellous"]
    hu[t["cortex"]] = h["cortex"]
    # edema: a few HU below muscle, fat stranding in subcutaneous fat
    hu[t["edema"] & t["muscle"]] = h["muscle"] - 8
    hu[t["edema"] & t["fat"]] = h["fat"] + 55
    hu[t["involved_marrow"]] += 25  # marrow oedema raises the HU of fatty marrow
    hu[t["destruction"] & t["cortex"]] = 180 + 0.08 * h["cortex"]  # lytic cortex
    hu[t["destruction"] & t["marrow"]] = 35
    hu[t["periosteal"]] = 520
    hu[t["abscess"]] = 18
    hu[t["abscess_rim"]] = 55
    hu[t["sequestrum"]] = 1650
    hu = np.where(t["callus"], np.maximum(hu, t["callus_hu"]), hu)
    hu[t["metal"]] = 3071
    return hu


def _add_metal_artefacts(hu: np.ndarray, metal: np.ndarray, spacing_xy: float, rng: np.random.Generator) -> None:
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


def _misalignment_transform(an: PatientAnatomy, center) -> sitk.Euler3DTransform:
    """CT physical point -> PET physical point of the same anatomy (SimpleITK fixed->moving convention)."""
    tr = sitk.Euler3DTransform()
    tr.SetCenter(tuple(float(c) for c in center))
    tr.SetRotation(*[float(np.deg2rad(a)) for a in an.misalignment["angles_deg"]])
    tr.SetTranslation(tuple(an.misalignment["translation_mm"]))
    return tr


def _body_box(an: PatientAnatomy, margin: float) -> tuple[float, float, float, float]:
    """Physical x/y bounds of both legs plus ``margin`` mm (everything outside is air)."""
    x0 = min(leg["center"][0] - leg["radii"][0] for leg in an.legs) - margin
    x1 = max(leg["center"][0] + leg["radii"][0] for leg in an.legs) + margin
    y0 = min(leg["center"][1] - leg["radii"][1] for leg in an.legs) - margin
    y1 = max(leg["center"][1] + leg["radii"][1] for leg in an.legs) + margin
    return x0, x1, y0, y1


def _evaluate_slices(an: PatientAnatomy, xs, ys, zs, mapping=None, fields=("truth",), margin: float = 3.0):
    """Evaluate tissue maps slice by slice on a grid; ``mapping`` maps grid points to CT-frame points.

    Only the box around the legs is evaluated (``margin`` mm must cover any misalignment); the rest is air.
    """
    x0, x1, y0, y1 = _body_box(an, margin)
    ix = np.flatnonzero((xs >= x0) & (xs <= x1))
    iy = np.flatnonzero((ys >= y0) & (ys <= y1))
    box = (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
    yy, xx = np.meshgrid(ys[box[0]], xs[box[1]], indexing="ij")
    out = None
    for k, zk in enumerate(zs):
        if mapping is None:
            px, py, pz = xx, yy, np.full_like(xx, zk)
        else:
            px, py, pz = mapping(xx, yy, np.full_like(xx, zk))
        t = _tissues(an, px, py, pz)
        if out is None:
            out = {f: np.zeros((len(zs), len(ys), len(xs)), t[f].dtype) for f in fields}
        for f in fields:
            out[f][k][box] = t[f]
    return out


def _suv_map(an: PatientAnatomy, t: dict[str, np.ndarray]) -> np.ndarray:
    s = an.suv
    suv = np.zeros(t["body"].shape, np.float32)
    suv[t["fat"]] = s["fat"]
    suv[t["skin"]] = s["skin"]
    suv[t["muscle"]] = s["muscle"]
    suv[t["cortex"]] = s["cortex"]
    suv[t["marrow"]] = s["marrow"]
    suv[t["cancellous"]] = s["cancellous"]  # red marrow of the metaphysis
    suv = np.maximum(suv, t["inflammation_suv"])
    suv = np.maximum(suv, t["hotspot_suv"])
    suv = np.maximum(suv, t["focus_uptake"])
    suv[t["metal"]] = 0.0
    return suv


def _ct_grid(rng, scale: dict, z_len: float) -> Grid:
    n = int(round(512 * scale["xy"]))
    px = rng.uniform(0.8, 1.0) * 512 / n
    dz = rng.choice([2.0, 2.5, 3.0])
    nz = int(round(z_len / dz)) + 1
    fov = px * n
    return Grid((-fov / 2 + px / 2 + rng.normal(0, 2), -fov / 2 + px / 2 + rng.normal(0, 2), 0.0), (px, px, float(dz)),
                (n, n, nz))


def _pet_grid(rng, ct: Grid) -> Grid:
    px = rng.uniform(3.9, 4.7)
    dz = rng.uniform(3.0, 4.0)
    fov = rng.uniform(500, 600)
    n = int(fov / px)
    ct_z = ct.spacing[2] * (ct.size[2] - 1)
    z0 = -rng.uniform(10, 20)
    nz = int((ct_z - 2 * z0) / dz) + 1
    return Grid((-fov / 2 + rng.normal(0, 5), -fov / 2 + rng.normal(0, 5), z0), (px, px, dz), (n, n, nz))


def _rater_jitter(mask: np.ndarray, spacing_xy: float, jitter_mm: float, rng, bias_mm: float = 0.0) -> np.ndarray:
    """Re-contour a 3D mask slice by slice: signed distance thresholded at a smooth random offset."""
    out = np.zeros_like(mask)
    margin = int(np.ceil((abs(bias_mm) + 3 * jitter_mm) / spacing_xy)) + 3
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        sl = mask[k]
        ys, xs = np.nonzero(sl)
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, sl.shape[0])
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, sl.shape[1])
        crop = sl[y0:y1, x0:x1]
        signed = (ndimage.distance_transform_edt(~crop) - ndimage.distance_transform_edt(crop)) * spacing_xy
        coarse = rng.normal(0, 1, size=(max(2, crop.shape[0] // 8 + 2), max(2, crop.shape[1] // 8 + 2)))
        offset = ndimage.zoom(coarse, (crop.shape[0] / coarse.shape[0], crop.shape[1] / coarse.shape[1]), order=3)
        offset = offset[: crop.shape[0], : crop.shape[1]]
        offset = offset / (offset.std() + 1e-6) * jitter_mm + bias_mm + rng.normal(0, jitter_mm * 0.3)
        out[k, y0:y1, x0:x1] = signed < offset
    return out


@dataclass
class PatientVolumes:
    """Arrays (z, y, x) and geometry of one generated patient."""

    ct: sitk.Image
    pet: sitk.Image
    labels: dict[str, sitk.Image]
    meta: dict
    mri: sitk.Image | None = None


def _patient_stream(patient_id: str, seed: int, index: int, scale: str) -> tuple[np.random.Generator, PatientAnatomy]:
    rng = np.random.default_rng([seed, index])
    z_len = float(rng.uniform(200, 300) * SCALES[scale]["z"])
    return rng, sample_anatomy(rng, patient_id, z_len)


def patient_anatomy(seed: int, index: int, scale: str = "paper") -> PatientAnatomy:
    """The sampled anatomy of patient ``index`` without generating any image (cheap)."""
    return _patient_stream(f"P{index:03d}", seed, index, scale)[1]


def generate_patient(patient_id: str, seed: int, index: int, scale: str = "paper", with_mri: bool = False) -> PatientVolumes:
    """Generate one synthetic patient deterministically from (seed, index)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}' (choose from {sorted(SCALES)})")
    rng, an = _patient_stream(patient_id, seed, index, scale)
    sc = SCALES[scale]
    z_len = an.z_len
    ct_grid = _ct_grid(rng, sc, z_len)
    an.z_len = ct_grid.spacing[2] * (ct_grid.size[2] - 1)
    xs, ys, zs = ct_grid.axes()
    fields = ("body", "truth", "edema", "inflammation", "metal", "destruction", "abscess", "fat", "skin", "muscle",
              "marrow", "cancellous", "cortex", "involved_marrow", "periosteal", "abscess_rim", "sequestrum",
              "callus", "callus_hu", "focus_id", "edema_id")
    t = _evaluate_slices(an, xs, ys, zs, fields=fields)
    hu = _ct_hu(an, t, rng)
    # partial volume of the reconstruction kernel, then streaks and correlated noise
    hu = ndimage.gaussian_filter(hu, sigma=(0, 0.6, 0.6))
    if an.implant is not None:
        _add_metal_artefacts(hu, t["metal"], ct_grid.spacing[0], rng)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, hu.shape).astype(np.float32), sigma=(0, 0.7, 0.7))
    hu += noise * (an.ct_noise / 0.4)
    hu[~t["body"] & ~ndimage.binary_dilation(t["metal"].any(0), iterations=3)[None]] = -1000 + np.clip(
        noise[~t["body"] & ~ndimage.binary_dilation(t["metal"].any(0), iterations=3)[None]] * 3, -24, 24)
    hu[t["metal"]] = 3071
    ct_array = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    ct_img = image_from_array(ct_array, {"origin": ct_grid.origin, "spacing": ct_grid.spacing})

    focus_center = np.array(an.foci[0]["destruction"].center)
    tr = _misalignment_transform(an, focus_center)
    inverse = tr.GetInverse()
    matrix = np.array(inverse.GetMatrix()).reshape(3, 3)
    offset = np.array(inverse.GetTranslation()) + np.array(inverse.GetCenter()) - matrix @ np.array(inverse.GetCenter())

    def pet_to_ct(x, y, z):
        return (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2] * z + offset[0],
                matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2] * z + offset[1],
                matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2] * z + offset[2])

    pet_grid = _pet_grid(rng, ct_grid)
    sub = 2
    fine_spacing = tuple(s / sub for s in pet_grid.spacing)
    fine_origin = tuple(pet_grid.origin[i] - pet_grid.spacing[i] / 2 + fine_spacing[i] / 2 for i in range(3))
    fine = Grid(fine_origin, fine_spacing, tuple(n * sub for n in pet_grid.size))
    fxs, fys, fzs = fine.axes()
    activity = _evaluate_slices(an, fxs, fys, fzs, mapping=pet_to_ct, fields=("suv",), margin=25.0)["suv"]
    sigma_mm = an.pet_fwhm / 2.3548
    activity = ndimage.gaussian_filter(activity, sigma=[sigma_mm / s for s in fine_spacing[::-1]])
    nz, ny, nx = (n // sub for n in activity.shape)
    pet = activity.reshape(nz, sub, ny, sub, nx, sub).mean(axis=(1, 3, 5))
    pet = pet + rng.normal(0, 1, pet.shape).astype(np.float32) * np.sqrt(np.maximum(pet, 0) * an.pet_noise) * 0.5
    pet = np.clip(pet, 0, None).astype(np.float32)
    pet_img = image_from_array(pet, {"origin": pet_grid.origin, "spacing": pet_grid.spacing})

    # what the readers see: the PET registered perfectly onto the CT grid
    reader_pet = sitk.GetArrayFromImage(sitk.Resample(pet_img, ct_img, tr, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    labels = _rate(an, t, reader_pet, ct_grid.spacing[0], ct_grid.spacing[2], rng)
    label_imgs = {k: image_from_array(v.astype(np.uint8), ct_img) for k, v in labels.items()}
    mri_img = _make_mri(an, rng, ct_grid) if with_mri else None
    foci_meta = [{
        "grade": f["grade"], "suvmax_model": f["suvmax"], "center_mm": list(f["destruction"].center),
        "has_abscess": f["abscess"] is not None, "has_sequestrum": f["sequestrum"] is not None,
        "periosteal_reaction": f["periosteal"],
    } for f in an.foci]
    spacing_ml = float(np.prod(ct_grid.spacing)) / 1000
    meta = {
        "patient_id": patient_id, "seed": seed, "index": index, "scale": scale, "site": an.site,
        "affected_side": ["right", "left"][an.side], "implant": None if an.implant is None else an.implant["kind"],
        "confounders": [c["kind"] for c in an.confounders], "foci": foci_meta,
        "lesion_center_mm": list(map(float, focus_center)),
        "pet_to_ct_truth": {"type": "Euler3DTransform", "convention": "maps CT physical points to PET physical points",
                            "center_mm": list(map(float, focus_center)), **an.misalignment,
                            "parameters": list(tr.GetParameters()), "fixed_parameters": list(tr.GetFixedParameters())},
        "ct_grid": ct_grid.as_dict(), "pet_grid": pet_grid.as_dict(),
        "pet_fwhm_mm": an.pet_fwhm, "pet_noise": an.pet_noise, "ct_noise_hu": an.ct_noise,
        "hu": an.hu, "suv": an.suv, "rater": an.rater,
        "volumes_ml": {k: float(v.sum() * spacing_ml) for k, v in labels.items()},
        "suvmax_observed": float(pet.max()),
    }
    return PatientVolumes(ct_img, pet_img, label_imgs, meta, mri_img)


def _within_mm(mask: np.ndarray, distance_mm: float, spacing_xy: float, spacing_z: float) -> np.ndarray:
    """Voxels within ``distance_mm`` of ``mask`` (computed on the mask's bounding box plus margin)."""
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    margin = (int(np.ceil(distance_mm / spacing_z)) + 1, *(int(np.ceil(distance_mm / spacing_xy)) + 1,) * 2)
    lo = [max(int(i.min()) - m, 0) for i, m in zip(np.nonzero(mask), margin)]
    hi = [min(int(i.max()) + m + 1, n) for i, m, n in zip(np.nonzero(mask), margin, mask.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    dist = ndimage.distance_transform_edt(~mask[box], sampling=(spacing_z, spacing_xy, spacing_xy))
    out[box] = dist <= distance_mm
    return out


def _rate(an: PatientAnatomy, t: dict, reader_pet: np.ndarray, spacing_xy: float, z_spacing: float,
          rng) -> dict[str, np.ndarray]:
    """Truth and the two readers' masks on the CT grid."""
    truth = t["truth"]
    r = an.rater
    label_a = np.zeros_like(truth)
    label_b = np.zeros_like(truth)
    for number, focus in enumerate(an.foci, start=1):
        core = t["focus_id"] == number
        if not core.any():
            continue
        suvmax = float(reader_pet[core].max())
        background = an.suv["muscle"]
        # reader A: a low threshold relative to the focus contrast, only around the focus
        level_a = max(background + r["a_threshold"] * (suvmax - background), 1.25 * an.suv["marrow"])
        neighbourhood = (t["edema_id"] == number) | core
        near = _within_mm(neighbourhood, 12.0, spacing_xy, z_spacing)
        hot_a = (reader_pet > level_a) & t["body"] & near
        lab, _ = ndimage.label(hot_a)
        touching = np.unique(lab[neighbourhood & hot_a])
        region_a = np.isin(lab, touching[touching > 0])
        if not r["a_includes_inflammation"]:
            region_a &= ~(t["inflammation"] & ~ndimage.binary_dilation(core, iterations=3))
        region_a |= neighbourhood
        label_a |= region_a
        skip = focus["grade"] == "low" and r["b_skips_low_grade"] and suvmax < 4.0
        if not skip:
            region_b = core & (t["destruction"] | t["abscess"] | t["sequestrum"] | t["involved_marrow"])
            region_b &= reader_pet > r["b_threshold"] * suvmax
            label_b |= region_b
    label_a = _rater_jitter(label_a, spacing_xy, r["a_jitter_mm"], rng, bias_mm=1.0)
    label_b = _rater_jitter(label_b, spacing_xy, r["b_jitter_mm"], rng, bias_mm=-0.5)
    label_b &= t["body"]
    label_a &= t["body"]
    return {"truth": truth, "label_a": label_a, "label_b": label_b}


def _make_mri(an: PatientAnatomy, rng, ct_grid: Grid) -> sitk.Image:
    """A STIR-like image (fluid/edema bright, fat suppressed) on its own 1x1x4 mm-ish grid, aligned to CT."""
    px = rng.uniform(0.9, 1.2) * 512 / ct_grid.size[0]
    fov = ct_grid.spacing[0] * ct_grid.size[0] * rng.uniform(0.9, 1.0)
    n = int(fov / px)
    dz = rng.uniform(3.5, 4.5)
    nz = int(an.z_len / dz) + 1
    grid = Grid((-fov / 2, -fov / 2, 0.0), (px, px, dz), (n, n, nz))
    xs, ys, zs = grid.axes()
    t = _evaluate_slices(an, xs, ys, zs, fields=("body", "fat", "muscle", "skin", "marrow", "cortex", "edema", "abscess",
                                                  "involved_marrow", "destruction", "inflammation", "metal"))
    sig = np.zeros(t["body"].shape, np.float32)
    sig[t["muscle"]] = 120
    sig[t["skin"]] = 150
    sig[t["fat"]] = 40
    sig[t["marrow"]] = 35
    sig[t["cortex"]] = 5
    sig[t["edema"]] = 320
    sig[t["inflammation"]] = 280
    sig[t["involved_marrow"] | t["destruction"]] = 380
    sig[t["abscess"]] = 520
    sig[t["metal"]] = 0
    sig = ndimage.gaussian_filter(sig, sigma=(0, 0.8, 0.8))
    sig = np.abs(sig + rng.normal(0, 12, sig.shape)).astype(np.float32)  # Rician-like magnitude noise
    return image_from_array(sig, {"origin": grid.origin, "spacing": grid.spacing})


LABEL_DESCRIPTIONS = {
    "label_a": "Label A, high sensitivity (screening): PET hypermetabolic region at a low relative threshold "
    "plus the surrounding soft-tissue edema",
    "label_b": "Label B, high specificity (surgical): bone destruction / abscess cavity with strong uptake, core only",
    "truth": "exact infected region of the phantom (destruction, involved marrow, sequestrum, abscess)",
}


def _write_patient(vol: PatientVolumes, folder: Path) -> None:
    """Write one patient into a temporary folder, then rename it into place (never half-written)."""
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write_image(vol.ct, tmp / "ct.nii.gz")
        write_image(vol.pet, tmp / "pet.nii.gz")
        if vol.mri is not None:
            write_image(vol.mri, tmp / "mri.nii.gz")
        for name, img in vol.labels.items():
            write_image(img, tmp / f"{name}.nii.gz")
        (tmp / "meta.json").write_text(json.dumps(vol.meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _generate_and_write(task) -> tuple[dict, float]:
    pid, seed, index, scale, with_mri, out = task
    start = time.perf_counter()
    vol = generate_patient(pid, seed, index, scale=scale, with_mri=with_mri)
    _write_patient(vol, Path(out) / pid)
    return vol.meta, time.perf_counter() - start


def generate_cohort(
    out: str | os.PathLike,
    patients: int = 20,
    seed: int = 0,
    scale: str = "paper",
    with_mri: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int | None = None,
) -> Path:
    """Generate a synthetic cohort folder (``cohort.json``, ``manifest.csv``, a folder per patient).

    Patients are independent (each has its own random stream from (seed, index)), so ``jobs`` processes
    generate them in parallel with identical results.
    """
    if not isinstance(patients, int) or patients < 1:
        raise ValueError(f"--patients must be a positive integer, got {patients!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}' (choose from {sorted(SCALES)})")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    from .parallel import map_in_processes

    tasks = [(f"P{index:03d}", seed, index, scale, with_mri, out) for index in range(patients)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, patients))
    rows = []
    spec_patients = {}
    results = map_in_processes(_generate_and_write, tasks, jobs, "synthetic patients", progress)
    for (pid, *_), (m, seconds) in zip(tasks, results):
        rows.append({
            "patient_id": pid, "site": m["site"], "side": m["affected_side"], "implant": m["implant"] or "none",
            "confounders": ";".join(m["confounders"]) or "none", "n_foci": len(m["foci"]),
            "ct_size": "x".join(map(str, m["ct_grid"]["size"])), "ct_spacing_mm": "x".join(f"{v:.2f}" for v in m["ct_grid"]["spacing"]),
            "pet_spacing_mm": "x".join(f"{v:.2f}" for v in m["pet_grid"]["spacing"]),
            **{f"{k}_ml": round(v, 3) for k, v in m["volumes_ml"].items()},
            "suvmax": round(m["suvmax_observed"], 2), "seconds": round(seconds, 2),
        })
        entry = {"ct": f"{pid}/ct.nii.gz", "pet": f"{pid}/pet.nii.gz",
                 "labels": {k: f"{pid}/{k}.nii.gz" for k in ("label_a", "label_b", "truth")}, "meta": f"{pid}/meta.json"}
        if with_mri:
            entry["mri"] = f"{pid}/mri.nii.gz"
        spec_patients[pid] = entry
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    spec = {
        "name": f"synthetic-osteomyelitis-{scale}-seed{seed}",
        "description": "Synthetic lower-limb PET-CT osteomyelitis cohort generated by studylib.synthetic",
        "root": ".",
        "channels": {"ct": "CT in HU", "pet": "PET in SUV (body weight)", **({"mri": "STIR-like MRI"} if with_mri else {})},
        "labels": LABEL_DESCRIPTIONS,
        "train_labels": ["label_a", "label_b"],
        "synthetic": {"seed": seed, "patients": patients, "scale": scale, "assumptions": ASSUMPTIONS},
        "patients": spec_patients,
    }
    write_cohort_json(out / "cohort.json", spec)
    return out


def anatomy_summary(an: PatientAnatomy) -> dict:
    """A JSON-friendly view of the sampled anatomy (for debugging and the report)."""
    return json.loads(json.dumps(asdict(an), default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))
