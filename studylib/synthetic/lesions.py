"""What is wrong with the limb: infection foci and their CT signs, implants, and the confounders of FDG PET."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Bone, Limb
from .geometry import Blob, random_blob
from .literature import CT_SIGNS, LESION, PET


@dataclass
class LesionSigns:
    """CT attenuation of the signs of infection in one patient (HU)."""

    involved_marrow: float
    lytic: float
    periosteal: float
    sequestrum: float
    abscess: float
    stranding: float
    muscle_oedema: float


def sample_signs(rng: np.random.Generator) -> LesionSigns:
    """The patient's CT signs, drawn from the literature ranges."""
    return LesionSigns(**{name: CT_SIGNS[f"{name}_hu"].draw(rng) for name in (
        "involved_marrow", "lytic", "periosteal", "sequestrum", "abscess", "stranding", "muscle_oedema")})


@dataclass
class SinusTract:
    """A fluid-filled tube from the bone surface to the skin."""

    start: tuple[float, float, float]
    direction: tuple[float, float]
    length: float
    radius: float


@dataclass
class Focus:
    """One focus of osteomyelitis on the affected bone."""

    grade: str  # "high" or "low"
    theta: float  # direction of the focus around the bone axis (rad)
    suvmax: float
    destruction: Blob
    marrow_half_extent: float
    edema: Blob
    periosteal: bool
    sequestrum: Blob | None = None
    abscess: Blob | None = None
    abscess_rim: float = 0.0
    gas: list[Blob] | None = None
    sinus_tract: SinusTract | None = None


@dataclass
class Implant:
    """Orthopaedic metal: a plate with screws or an intramedullary nail."""

    kind: str
    bone: int
    theta: float
    z_range: tuple[float, float]
    screw_step: float


@dataclass
class Confounder:
    """Something that is not infection but looks like it on PET (uptake) or CT (callus)."""

    kind: str  # sterile_inflammation, lymph_node, healing_callus
    blob: Blob
    suv: float
    hu: float = 0.0


def sample_focus(rng: np.random.Generator, bone: Bone, limb: Limb, z0: float, grade: str,
                 marrow_half_extent: float) -> Focus:
    """One focus centred at height ``z0`` on the surface of ``bone``."""
    theta = float(rng.uniform(0, 2 * np.pi))
    r_b = min(bone.radii)
    direction = np.array([np.cos(theta), np.sin(theta)])
    surface = np.array(bone.center) + direction * r_b
    size = rng.uniform(0.7, 1.0) if grade == "low" else rng.uniform(0.9, 1.4)
    destruction = random_blob(
        rng, (*(surface - direction * r_b * 0.35), z0),
        (rng.uniform(8, 13) * size, rng.uniform(8, 13) * size, rng.uniform(10, 22) * size), 0.22)
    suvmax = PET["low_grade_suvmax" if grade == "low" else "focus_suvmax"].draw(rng)
    focus = Focus(grade=grade, theta=theta, suvmax=suvmax, destruction=destruction,
                  marrow_half_extent=float(marrow_half_extent * (0.6 if grade == "low" else 1.0)),
                  edema=destruction, periosteal=bool(rng.uniform() < 0.5))
    if rng.uniform() < 0.4:
        focus.sequestrum = random_blob(
            rng, (*(surface - direction * r_b * 0.2), z0 + rng.normal(0, 3)), (rng.uniform(2, 3.5),) * 3, 0.1)
    if rng.uniform() < (0.65 if grade == "high" else 0.2):
        ra = rng.uniform(7, 14) * size
        focus.abscess = random_blob(
            rng, (*(surface + direction * ra * 0.9), z0 + rng.normal(0, 4)),
            (ra, ra * rng.uniform(0.7, 1.0), ra * rng.uniform(1.0, 1.6)), 0.15)
        focus.abscess_rim = float(rng.uniform(2.0, 3.5))
        if rng.uniform() < CT_SIGNS["gas_fraction"].low:
            c = np.array(focus.abscess.center)
            focus.gas = [random_blob(rng, c + rng.normal(0, ra * 0.3, 3), (rng.uniform(1.5, 3.0),) * 3, 0.1)
                         for _ in range(int(rng.integers(1, 4)))]
    if grade == "high" and rng.uniform() < CT_SIGNS["sinus_tract_fraction"].low:
        skin_distance = float(np.hypot(*(surface - np.array(limb.center))))
        length = max(min(limb.radii) - skin_distance * 0.2, 25.0)
        focus.sinus_tract = SinusTract(start=(float(surface[0]), float(surface[1]), float(z0)),
                                       direction=(float(direction[0]), float(direction[1])), length=float(length) * 1.5,
                                       radius=float(rng.uniform(1.5, 3.0)))
    main = focus.abscess or destruction
    edema_center = (np.array(destruction.center) + np.array(main.center)) / 2
    focus.edema = random_blob(
        rng, edema_center, tuple(max(destruction.radii[i], main.radii[i]) + rng.uniform(6, 12) for i in range(3)), 0.2)
    return focus


def marrow_half_extent(rng: np.random.Generator, implant: Implant | None, affected: int) -> float:
    """Half-length (mm) of intramedullary involvement: along the nail when an infected nail is present."""
    if implant is not None and implant.kind == "nail" and implant.bone == affected:
        return LESION["nail_involvement"].draw(rng) * (implant.z_range[1] - implant.z_range[0]) / 2
    return LESION["marrow_half_extent_mm"].draw(rng)


def sample_implant(rng: np.random.Generator, affected: int, z0: float, z_len: float) -> Implant | None:
    """A plate or a nail on the affected bone in about a third of the patients."""
    if rng.uniform() >= 0.34:
        return None
    kind = "plate" if rng.uniform() < 0.55 else "nail"
    half = rng.uniform(40, 80) if kind == "plate" else rng.uniform(0.3, 0.45) * z_len
    z_range = (float(z0 - half * rng.uniform(0.7, 1.3)), float(z0 + half * rng.uniform(0.7, 1.3)))
    return Implant(kind=kind, bone=affected, theta=float(rng.uniform(0, 2 * np.pi)), z_range=z_range,
                   screw_step=float(rng.uniform(14, 20)))


def sample_confounders(rng: np.random.Generator, bones: list[Bone], limbs: list[Limb], affected: int,
                       implant: Implant | None, z0: float, z_len: float) -> list[Confounder]:
    """Sterile inflammation, a reactive lymph node and a healing callus, each in some of the patients."""
    out: list[Confounder] = []
    bone = bones[affected]
    if implant is not None and rng.uniform() < 0.6 or implant is None and rng.uniform() < 0.25:
        # sterile inflammation along the implant or a post-operative scar: uptake without destruction
        theta = float(rng.uniform(0, 2 * np.pi)) if implant is None else implant.theta + rng.normal(0, 0.4)
        dist = min(bone.radii) + rng.uniform(6, 14)
        zc = (implant.z_range[0] + rng.uniform(5, 20)) if implant else z0 + rng.choice([-1, 1]) * rng.uniform(35, 60)
        center = (bone.center[0] + dist * np.cos(theta), bone.center[1] + dist * np.sin(theta),
                  float(np.clip(zc, 10, z_len - 10)))
        out.append(Confounder("sterile_inflammation", random_blob(
            rng, center, (rng.uniform(6, 10), rng.uniform(6, 10), rng.uniform(10, 20))), PET["sterile_inflammation_suv"].draw(rng)))
    if rng.uniform() < 0.35:
        limb = limbs[int(rng.integers(0, 2))]
        ang = rng.uniform(0, 2 * np.pi)
        rr = rng.uniform(0.55, 0.75)
        center = (limb.center[0] + rr * limb.radii[0] * np.cos(ang), limb.center[1] + rr * limb.radii[1] * np.sin(ang),
                  float(rng.uniform(0.15, 0.85) * z_len))
        out.append(Confounder("lymph_node", random_blob(rng, center, (rng.uniform(4, 7),) * 3, 0.1),
                              PET["lymph_node_suv"].draw(rng)))
    if rng.uniform() < 0.3:
        b = bones[int(rng.integers(0, len(bones)))]
        theta = float(rng.uniform(0, 2 * np.pi))
        zc = float(rng.uniform(0.15, 0.85) * z_len)
        center = (b.center[0] + min(b.radii) * np.cos(theta), b.center[1] + min(b.radii) * np.sin(theta), zc)
        out.append(Confounder("healing_callus", random_blob(
            rng, center, (rng.uniform(5, 8), rng.uniform(5, 8), rng.uniform(12, 25))), PET["callus_suv"].draw(rng),
            hu=float(rng.uniform(1600, 1950))))
    return out
