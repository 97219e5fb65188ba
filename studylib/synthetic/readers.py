"""Simulated readers who contour what the fused images show, in the two styles of the paper (section 4.2).

A reader never copies a region of the phantom. Each read draws its parameters from the reader's style (so the
same reader varies between patients) and then:

1. looks at the registered PET as displayed (smoothed by the eye over ~2 mm) and at the CT, where a change
   against healthy tissue is visible when it exceeds the reader's detectability level (a multiple of the
   CT's noise SD, the Rose-criterion view of a radiologist);
2. starts from the infection focus it is asked about and keeps the connected visible region within its reach:
   the sensitive style (label A) takes uptake above its SUV threshold *or* any visible CT change, soft tissue
   included; the specific style (label B) takes bone (or abscess cavity) that shows *both* a visible CT change
   and uptake above its higher threshold;
3. decides on the ambiguous structures (a second low-grade focus, sterile inflammation next to the focus,
   periosteal reaction, a sinus tract, an abscess) with the style's probabilities;
4. contours slice by slice: closes and fills the outline, moves its edge by a smooth random offset, and drops
   first and last slices whose contour is smaller than the reader is willing to draw.

The visibility rule of a read (``visibility_rule``) is what a test checks each mask against, on noise-free maps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .geometry import bounding_box, distance_mm
from .literature import READER_SOURCES


@dataclass(frozen=True)
class ReaderStyle:
    """The distributions one style of reading draws from (ranges are uniform, probabilities per read)."""

    name: str
    description: str
    pet_threshold_suv: tuple[float, float]
    ct_detect_k: tuple[float, float]  # a CT change is visible above k x the image's noise SD
    needs_both: bool  # True: CT change AND uptake in bone; False: either, soft tissue included
    reach_mm: tuple[float, float]  # how far from the infected core the contour may extend
    include: dict[str, float] = field(default_factory=dict)  # probability of including each ambiguous structure
    min_slice_area_mm2: tuple[float, float] = (5.0, 15.0)
    closing_mm: tuple[float, float] = (1.0, 2.0)
    jitter_mm: tuple[float, float] = (0.5, 1.0)


STYLES = {
    "sensitive": ReaderStyle(
        name="sensitive",
        description="Label A, high sensitivity (screening): FDG uptake above an absolute SUV threshold of 2.0-2.5 "
        "or any visible CT change connected to the focus, soft-tissue oedema and stranding included",
        pet_threshold_suv=(2.0, 2.5), ct_detect_k=(1.0, 1.5), needs_both=False, reach_mm=(20.0, 35.0),
        include={"second_low_grade_focus": 0.9, "sterile_inflammation": 0.5, "periosteal_reaction": 0.9,
                 "sinus_tract": 0.9, "abscess": 1.0},
        min_slice_area_mm2=(5.0, 15.0), closing_mm=(2.0, 3.0), jitter_mm=(0.5, 1.0)),
    "specific": ReaderStyle(
        name="specific",
        description="Label B, high specificity (surgical): bone (or abscess cavity) that shows a visible CT change "
        "and uptake above SUV 2.5-3.5 (the non-infected mean is 3.0 in Wenter 2017), core only",
        pet_threshold_suv=(2.5, 3.5), ct_detect_k=(1.5, 2.5), needs_both=True, reach_mm=(2.0, 5.0),
        include={"second_low_grade_focus": 0.3, "sterile_inflammation": 0.0, "periosteal_reaction": 0.3,
                 "sinus_tract": 0.2, "abscess": 0.6},
        min_slice_area_mm2=(20.0, 50.0), closing_mm=(1.0, 1.5), jitter_mm=(0.3, 0.6)),
}


def reader_names(n_readers: int) -> list[tuple[str, str]]:
    """(label name, style) of ``n_readers`` readers: label A and label B first, then alternating styles."""
    if n_readers < 1:
        raise ValueError(f"--readers must be at least 1, got {n_readers}")
    names = [("label_a", "sensitive"), ("label_b", "specific")]
    for k in range(3, n_readers + 1):
        names.append((f"reader_{k}", "sensitive" if k % 2 else "specific"))
    return names[:n_readers]


@dataclass
class ReaderDraw:
    """The parameters of one read: one reader, one patient."""

    style: str
    pet_threshold_suv: float
    ct_detect_hu: float
    needs_both: bool
    reach_mm: float
    include: dict[str, bool]
    min_slice_area_mm2: float
    closing_mm: float
    jitter_mm: float

    def as_dict(self) -> dict:
        """JSON-friendly record (written to the patient's meta.json)."""
        return asdict(self)


def draw_reader(style: ReaderStyle, rng: np.random.Generator, ct_noise_sd: float) -> ReaderDraw:
    """One read's parameters from the style's distributions."""
    return ReaderDraw(
        style=style.name, pet_threshold_suv=float(rng.uniform(*style.pet_threshold_suv)),
        ct_detect_hu=float(rng.uniform(*style.ct_detect_k) * ct_noise_sd), needs_both=style.needs_both,
        reach_mm=float(rng.uniform(*style.reach_mm)),
        include={k: bool(rng.uniform() < p) for k, p in sorted(style.include.items())},
        min_slice_area_mm2=float(rng.uniform(*style.min_slice_area_mm2)),
        closing_mm=float(rng.uniform(*style.closing_mm)), jitter_mm=float(rng.uniform(*style.jitter_mm)))


@dataclass
class ReaderView:
    """What the readers look at, on the CT grid (z, y, x), and the anatomy they know."""

    pet: np.ndarray  # registered PET as displayed (with noise)
    ct_change_hu: np.ndarray  # noise-free |diseased - healthy| CT after the scanner's blur
    maps: dict[str, np.ndarray]  # body, bone, focus_id, and the ambiguous structures
    focus_grades: list[str]
    spacing_zyx: tuple[float, float, float]


def visibility_rule(view_pet: np.ndarray, ct_change_hu: np.ndarray, draw: ReaderDraw) -> np.ndarray:
    """Voxels a read may call lesion: uptake above its threshold or a CT change above its detectability."""
    return (view_pet > draw.pet_threshold_suv) | (ct_change_hu > draw.ct_detect_hu)


def _visible(view: ReaderView, pet_seen: np.ndarray, box, draw: ReaderDraw) -> np.ndarray:
    uptake = pet_seen > draw.pet_threshold_suv
    changed = view.ct_change_hu[box] > draw.ct_detect_hu
    if not draw.needs_both:
        return uptake | changed
    bone = view.maps["bone"][box] | view.maps["periosteal"][box]
    cavity = view.maps["abscess"][box] | view.maps["sinus_tract"][box]
    cavity_is_hot = ndimage.binary_dilation(cavity, iterations=2) & uptake
    return (bone & uptake & changed) | (cavity & changed & cavity_is_hot.any())


def _contour_slices(mask: np.ndarray, draw: ReaderDraw, spacing_xy: float, rng: np.random.Generator) -> np.ndarray:
    """Slice-by-slice contouring: close, fill, move the edge by a smooth offset, drop tiny end slices."""
    out = np.zeros_like(mask)
    radius = max(1, int(round(draw.closing_mm / spacing_xy)))
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    margin = radius + int(np.ceil(3 * draw.jitter_mm / spacing_xy)) + 3
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        ys, xs = np.nonzero(mask[k])
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, mask.shape[1])
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, mask.shape[2])
        crop = ndimage.binary_fill_holes(ndimage.binary_closing(mask[k, y0:y1, x0:x1], structure=disk))
        signed = (ndimage.distance_transform_edt(~crop) - ndimage.distance_transform_edt(crop)) * spacing_xy
        coarse = rng.normal(0, 1, size=(max(2, crop.shape[0] // 8 + 2), max(2, crop.shape[1] // 8 + 2)))
        offset = ndimage.zoom(coarse, (crop.shape[0] / coarse.shape[0], crop.shape[1] / coarse.shape[1]), order=3)
        offset = offset[: crop.shape[0], : crop.shape[1]]
        offset = offset / (offset.std() + 1e-6) * draw.jitter_mm
        out[k, y0:y1, x0:x1] = signed < offset
    area = out.sum(axis=(1, 2)) * spacing_xy**2
    drawn = np.flatnonzero(area > 0)
    for ends in (drawn, drawn[::-1]):  # the first and the last slice: too small to be worth drawing?
        for k in ends:
            if area[k] >= draw.min_slice_area_mm2:
                break
            out[k] = False
    return out


def read_patient(view: ReaderView, draw: ReaderDraw, rng: np.random.Generator) -> np.ndarray:
    """One reader's mask of one patient on the CT grid."""
    spacing = view.spacing_zyx
    label = np.zeros(view.pet.shape, bool)
    m = view.maps
    for number, grade in enumerate(view.focus_grades, start=1):
        if number > 1 and grade == "low" and not draw.include["second_low_grade_focus"]:
            continue
        core = m["focus_id"] == number
        box = bounding_box(core, [int(np.ceil((draw.reach_mm + 6) / s)) for s in spacing])
        if box is None:
            continue
        core_box = core[box]
        # the eye averages PET noise over about 2 mm
        pet_seen = ndimage.gaussian_filter(view.pet[box], sigma=[2.0 / s for s in spacing])
        candidate = _visible(view, pet_seen, box, draw) & m["body"][box]
        candidate &= distance_mm(core_box, spacing, draw.reach_mm) <= draw.reach_mm
        if not draw.include["periosteal_reaction"]:
            candidate &= ~(m["periosteal"][box] & ~core_box)
        if not draw.include["sinus_tract"]:
            candidate &= ~m["sinus_tract"][box]
        if not draw.include["abscess"]:
            candidate &= ~m["abscess"][box]
        if not draw.include["sterile_inflammation"]:
            candidate &= ~(ndimage.binary_dilation(m["inflammation"][box], iterations=2) & ~core_box)
        components, _ = ndimage.label(candidate)
        touching = np.unique(components[candidate & core_box])
        region = np.isin(components, touching[touching > 0])
        label[box] |= _contour_slices(region, draw, spacing[1], rng)
    return label & m["body"] & ~m["metal"]  # readers contour around the hardware, never over it


READING_ASSUMPTIONS = {
    "readers.model": "readers contour what the images show (see studylib/synthetic/readers.py): each read draws "
    "its thresholds, reach, decisions and contouring habits from its style, so agreement between A and B is an "
    "outcome of the images and the styles, never a parameter",
    **{f"readers.{name}": f"{s.description}; reach {s.reach_mm[0]:g}-{s.reach_mm[1]:g} mm from the infected core; "
       f"CT change visible above {s.ct_detect_k[0]:g}-{s.ct_detect_k[1]:g} x the CT noise SD; includes "
       + ", ".join(f"{k.replace('_', ' ')} {p:.0%}" for k, p in sorted(s.include.items()))
       + f"; closing {s.closing_mm[0]:g}-{s.closing_mm[1]:g} mm, edge jitter {s.jitter_mm[0]:g}-{s.jitter_mm[1]:g} mm; "
       f"end slices under {s.min_slice_area_mm2[0]:g}-{s.min_slice_area_mm2[1]:g} mm2 are not drawn"
       for name, s in STYLES.items()},
    "readers.sources": READER_SOURCES["thresholds"],
    "readers.development": "the edge-jitter ranges were narrowed on the development seed (A 0.8-1.5 -> 0.5-1.0 mm, "
    "B 0.4-0.8 -> 0.3-0.6 mm) because wider jitter put more than 10 % of a contour outside anything visible; "
    "agreement was not looked at for that choice",
}
