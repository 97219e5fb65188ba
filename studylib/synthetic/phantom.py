"""One patient as an analytic object: sampled parameters, tissue maps at any physical points, HU and SUV.

The object is defined in CT-frame millimetres, so any grid (CT, the PET's own grid through a misalignment,
MRI) samples the same anatomy. Imaging physics (blur, noise, artefacts) lives in ``scanners``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Bone, Limb, TissueValues, sample_bones, sample_limbs, sample_tissue_hu, sample_tissue_suv
from .geometry import blob_field
from .lesions import (
    Confounder,
    Focus,
    Implant,
    LesionSigns,
    marrow_half_extent,
    sample_confounders,
    sample_focus,
    sample_implant,
    sample_signs,
)
from .literature import CT, PET


@dataclass
class PatientAnatomy:
    """All random parameters of one synthetic patient (physical mm, CT frame)."""

    patient_id: str
    site: str
    side: int
    z_len: float
    limbs: list[Limb]
    fat: float
    hu: TissueValues
    suv: TissueValues
    signs: LesionSigns
    bones: list[Bone]
    foci: list[Focus]
    implant: Implant | None
    confounders: list[Confounder]
    misalignment: dict
    pet_fwhm: float
    pet_noise: float
    ct_noise: float

    @property
    def affected_bone(self) -> int:
        """Index of the infected bone (femur or tibia of the affected limb)."""
        return self.side * (len(self.bones) // 2)


def sample_anatomy(rng: np.random.Generator, patient_id: str, z_len: float) -> PatientAnatomy:
    """Draw one patient's anatomy, infection, implant, confounders and acquisition parameters."""
    site = str(rng.choice(["femur", "tibia"]))
    limbs = sample_limbs(rng, site)
    side = int(rng.integers(0, 2))
    bones = [b for limb in limbs for b in sample_bones(rng, site, limb)]
    affected = side * (len(bones) // 2)
    hu, suv, signs = sample_tissue_hu(rng), sample_tissue_suv(rng), sample_signs(rng)
    z0 = float(rng.uniform(0.3, 0.7) * z_len)
    implant = sample_implant(rng, affected, z0, z_len)
    extent = marrow_half_extent(rng, implant, affected)
    foci = [sample_focus(rng, bones[affected], limbs[side], z0, "high", extent)]
    if rng.uniform() < 0.25:
        z1 = z0 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.3) * z_len
        foci.append(sample_focus(rng, bones[affected], limbs[side], float(np.clip(z1, 0.12 * z_len, 0.88 * z_len)),
                                 "low" if rng.uniform() < 0.6 else "high", extent))
    if implant is not None:
        implant.theta = float(foci[0].theta + rng.normal(0, 0.6))
    confounders = sample_confounders(rng, bones, limbs, affected, implant, z0, z_len)
    misalignment = {
        "angles_deg": [float(v) for v in rng.uniform(-3, 3, size=3)],
        "translation_mm": [float(v) for v in rng.uniform(-5, 5, size=3)],
    }
    return PatientAnatomy(
        patient_id=patient_id, site=site, side=side, z_len=z_len, limbs=limbs, fat=float(rng.uniform(6, 25)),
        hu=hu, suv=suv, signs=signs, bones=bones, foci=foci, implant=implant, confounders=confounders,
        misalignment=misalignment, pet_fwhm=PET["fwhm_mm"].draw(rng), pet_noise=PET["noise_cv"].draw(rng),
        ct_noise=CT["noise_sd_hu"].draw(rng),
    )


BOOLEAN_MAPS = ("body", "skin", "muscle", "fat", "cortex", "marrow", "cancellous", "destruction", "involved_marrow",
                "sequestrum", "abscess", "abscess_rim", "gas", "sinus_tract", "edema", "periosteal", "inflammation",
                "lymph_node", "callus", "metal")


def tissue_maps(an: PatientAnatomy, x, y, z) -> dict[str, np.ndarray]:
    """Boolean tissue maps and continuous fields of the phantom at physical points (any broadcastable shape)."""
    x, y, z = np.broadcast_arrays(x, y, z)
    zc = np.clip(z, 0, an.z_len)
    t = {key: np.zeros(x.shape, bool) for key in BOOLEAN_MAPS}
    muscle_space = np.zeros(x.shape, bool)
    for limb in an.limbs:
        s = limb.scale_at(zc, an.z_len)
        a, b = limb.radii[0] * s, limb.radii[1] * s
        dx, dy = x - limb.center[0], y - limb.center[1]
        rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
        inside = rho < 1
        t["body"] |= inside
        t["skin"] |= inside & (rho > 1 - 2.0 / np.minimum(a, b))
        ma, mb = a - an.fat - 2, b - an.fat * 0.8 - 2
        muscle_space |= inside & (np.sqrt((dx / ma) ** 2 + (dy / mb) ** 2) < 1)
    bone_rho = {}
    for i, bone in enumerate(an.bones):
        rho, r_mm = bone.rho(x, y, zc, an.z_len)
        bone_rho[i] = (rho, r_mm)
        joint = np.abs(z / an.z_len - bone.joint_at) * an.z_len < bone.joint_gap / 2  # knee or ankle gap
        outer = (rho < 1) & t["body"] & ~joint
        inner = (rho < 1 - bone.cortex / r_mm) & ~joint
        t["cortex"] |= outer & ~inner
        t["marrow"] |= inner & t["body"]
        t["cancellous"] |= inner & t["body"] & (bone.scale_at(zc, an.z_len) > 1.12)
    t["muscle"] = muscle_space & ~t["skin"]
    t["fat"] = t["body"] & ~muscle_space & ~t["skin"]
    bone = t["cortex"] | t["marrow"]
    soft = t["body"] & ~bone
    for key in ("focus_uptake", "confounder_suv", "callus_hu"):
        t[key] = np.zeros(x.shape, np.float32)
    t["focus_id"] = np.zeros(x.shape, np.uint8)  # which focus owns an infected voxel (1-based)
    t["edema_id"] = np.zeros(x.shape, np.uint8)
    affected = an.bones[an.affected_bone]
    rho_aff, r_aff = bone_rho[an.affected_bone]
    for number, focus in enumerate(an.foci, start=1):
        owned = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"] | t["sinus_tract"]
        d = blob_field(focus.destruction, x, y, z)
        destroyed = (d < 1) & bone
        t["destruction"] |= destroyed
        ang = np.arctan2(y - affected.center[1], x - affected.center[0])
        sector = np.cos(ang - focus.theta) > -0.2
        dz = np.abs(z - focus.destruction.center[2])
        involved = t["marrow"] & (rho_aff < 1) & (dz < focus.marrow_half_extent) & sector
        t["involved_marrow"] |= involved
        uptake = np.where(destroyed, focus.suvmax * (0.6 + 0.4 * np.clip(1 - d * d, 0, 1)), 0)
        uptake = np.maximum(uptake, np.where(involved, focus.suvmax * (0.35 + 0.25 * np.exp(-dz / 30.0)), 0))
        if focus.sequestrum is not None:
            seq = (blob_field(focus.sequestrum, x, y, z) < 1) & (destroyed | involved)
            t["sequestrum"] |= seq
            uptake = np.where(seq, 0.3, uptake)  # dead bone takes up no FDG
        if focus.abscess is not None:
            da = blob_field(focus.abscess, x, y, z)
            rim_frac = focus.abscess_rim / min(focus.abscess.radii)
            abscess = (da < 1) & soft
            rim = abscess & (da > 1 - rim_frac)
            t["abscess"] |= abscess
            t["abscess_rim"] |= rim
            # ring-like uptake: hot rim, cold necrotic centre
            uptake = np.maximum(uptake, np.where(rim, 0.9 * focus.suvmax, np.where(abscess, 0.5, 0)))
            for bubble in focus.gas or []:
                t["gas"] |= (blob_field(bubble, x, y, z) < 1) & abscess & ~rim
        if focus.sinus_tract is not None:
            tract = focus.sinus_tract
            px, py = x - tract.start[0], y - tract.start[1]
            along = px * tract.direction[0] + py * tract.direction[1]
            across = np.abs(-px * tract.direction[1] + py * tract.direction[0])
            wiggle = 2.0 * np.sin(along / 9.0)
            in_tract = (along > 0) & (along < tract.length) & (np.abs(across - wiggle) < tract.radius)
            in_tract &= np.abs(z - tract.start[2]) < tract.radius * 1.5 + along * 0.15
            in_tract &= soft
            t["sinus_tract"] |= in_tract
            uptake = np.maximum(uptake, np.where(in_tract, 0.5 * focus.suvmax, 0))
        if focus.periosteal:
            shell = (rho_aff >= 1) & (rho_aff < 1 + 2.5 / r_aff) & (dz < focus.destruction.radii[2] * 1.3) & sector
            shell &= t["body"]
            t["periosteal"] |= shell
            uptake = np.maximum(uptake, np.where(shell, 0.35 * focus.suvmax, 0))
        de = blob_field(focus.edema, x, y, z)
        edema = (de < 1) & soft
        t["edema"] |= edema
        uptake = np.maximum(uptake, np.where(edema, (1.0 + 0.12 * focus.suvmax) * np.clip(1.3 - de, 0, 1), 0))
        t["focus_uptake"] = np.maximum(t["focus_uptake"], uptake.astype(np.float32))
        now = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"] | t["sinus_tract"]
        t["focus_id"][now & ~owned] = number
        t["edema_id"][edema & (t["edema_id"] == 0)] = number
    for conf in an.confounders:
        inside = (blob_field(conf.blob, x, y, z) < 1) & t["body"]
        if conf.kind == "healing_callus":
            rho_all = np.min(np.stack([bone_rho[i][0] for i in bone_rho]), axis=0)
            region = inside & (rho_all < 1.35)
            t["callus"] |= region
            t["callus_hu"] = np.where(region, conf.hu, t["callus_hu"])
        else:
            region = inside & soft
            t["inflammation" if conf.kind == "sterile_inflammation" else "lymph_node"] |= region
        t["confounder_suv"] = np.where(region, np.maximum(t["confounder_suv"], conf.suv), t["confounder_suv"])
    if an.implant is not None:
        t["metal"] = implant_mask(an, x, y, z, bone_rho)
    t["truth"] = t["destruction"] | t["involved_marrow"] | t["sequestrum"] | t["abscess"] | t["sinus_tract"]
    return t


def implant_mask(an: PatientAnatomy, x, y, z, bone_rho) -> np.ndarray:
    """Metal of the implant: a nail in the canal, or a plate on the cortex with transverse screws."""
    imp = an.implant
    bone = an.bones[imp.bone]
    rho, r_mm = bone_rho[imp.bone]
    z0, z1 = imp.z_range
    in_z = (z > z0) & (z < z1)
    dx, dy = x - bone.center[0], y - bone.center[1]
    if imp.kind == "nail":
        return in_z & (np.sqrt(dx * dx + dy * dy) < 5.0)
    ux, uy = np.cos(imp.theta), np.sin(imp.theta)
    radial = dx * ux + dy * uy  # along the screw axis
    tangential = -dx * uy + dy * ux
    plate = in_z & (radial > r_mm + 0.5) & (radial < r_mm + 4.5) & (np.abs(tangential) < 7)
    screw_phase = np.mod(z - z0, imp.screw_step)
    screws = in_z & (np.abs(screw_phase - imp.screw_step / 2) < 2.25) & (np.abs(tangential) < 2.25)
    screws &= (radial > -r_mm * 1.05) & (radial < r_mm + 4.5)
    return plate | screws


def attenuation_hu(an: PatientAnatomy, t: dict[str, np.ndarray], diseased: bool = True) -> np.ndarray:
    """Noise-free CT attenuation of the object; ``diseased=False`` gives the same patient without infection."""
    hu = np.full(t["body"].shape, -1000.0, np.float32)
    h, s = an.hu, an.signs
    for tissue in ("fat", "skin", "muscle", "marrow", "cancellous", "cortex"):
        hu[t[tissue]] = getattr(h, tissue)
    hu = np.where(t["callus"], np.maximum(hu, t["callus_hu"]), hu)
    # sterile inflammation: some stranding of the fat too (a CT confounder as well as a PET one)
    hu[t["inflammation"] & t["fat"]] = h.fat + 0.5 * s.stranding
    if diseased:
        hu[t["edema"] & t["muscle"]] = h.muscle + s.muscle_oedema
        hu[t["edema"] & t["fat"]] = h.fat + s.stranding
        hu[t["involved_marrow"]] = s.involved_marrow
        hu[t["destruction"]] = s.lytic
        hu[t["periosteal"]] = s.periosteal
        hu[t["abscess"] | t["sinus_tract"]] = s.abscess
        hu[t["abscess_rim"]] = h.muscle + 5
        hu[t["sequestrum"]] = s.sequestrum
        hu[t["gas"]] = -900
    hu[t["metal"]] = 3071
    return hu


def activity_suv(an: PatientAnatomy, t: dict[str, np.ndarray]) -> np.ndarray:
    """True FDG uptake (SUV) of the object, before any imaging."""
    s = an.suv
    suv = np.zeros(t["body"].shape, np.float32)
    for tissue in ("fat", "skin", "muscle", "cortex", "marrow", "cancellous"):
        suv[t[tissue]] = getattr(s, tissue)
    suv = np.maximum(suv, t["confounder_suv"])
    suv = np.maximum(suv, t["focus_uptake"])
    suv[t["metal"] | t["gas"]] = 0.0
    return suv


def body_box(an: PatientAnatomy, margin: float) -> tuple[float, float, float, float]:
    """Physical x/y bounds of both limbs plus ``margin`` mm (everything outside is air)."""
    x0 = min(limb.center[0] - limb.radii[0] for limb in an.limbs) - margin
    x1 = max(limb.center[0] + limb.radii[0] for limb in an.limbs) + margin
    y0 = min(limb.center[1] - limb.radii[1] for limb in an.limbs) - margin
    y1 = max(limb.center[1] + limb.radii[1] for limb in an.limbs) + margin
    return x0, x1, y0, y1


def evaluate_on_grid(an: PatientAnatomy, xs, ys, zs, fields, mapping=None, margin: float = 3.0) -> dict[str, np.ndarray]:
    """Fields of the phantom on a grid, slice by slice; ``mapping`` maps grid points to CT-frame points.

    ``fields`` may name tissue maps or the derived ``hu``, ``hu_healthy`` and ``suv``. Only the box around the
    limbs is evaluated (``margin`` mm must cover any misalignment); the rest is air.
    """
    x0, x1, y0, y1 = body_box(an, margin)
    ix = np.flatnonzero((xs >= x0) & (xs <= x1))
    iy = np.flatnonzero((ys >= y0) & (ys <= y1))
    box = (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
    yy, xx = np.meshgrid(ys[box[0]], xs[box[1]], indexing="ij")
    derived = {"hu": lambda t: attenuation_hu(an, t), "hu_healthy": lambda t: attenuation_hu(an, t, diseased=False),
               "suv": lambda t: activity_suv(an, t)}
    out: dict[str, np.ndarray] = {}
    for k, zk in enumerate(zs):
        points = (xx, yy, np.full_like(xx, zk)) if mapping is None else mapping(xx, yy, np.full_like(xx, zk))
        t = tissue_maps(an, *points)
        for f in fields:
            value = derived[f](t) if f in derived else t[f]
            if f not in out:
                fill = -1000 if f.startswith("hu") else 0
                out[f] = np.full((len(zs), len(ys), len(xs)), fill, value.dtype)
            out[f][k][box] = value
    return out
