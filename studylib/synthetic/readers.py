"""Simulated readers who contour what the fused images show, in the two styles of the paper (section 4.2).

A reader never copies a region of the phantom and never starts from it: the phantom's focus only tells the
reader which region was referred (its bounding box grown by a margin, as a request names a site). Each read
draws its parameters from the reader's style (so the same reader varies between patients) and then:

1. looks at the registered PET as displayed (smoothed by the eye over ~2 mm) and judges "above my SUV
   threshold" with its own smooth threshold error, and at the noisy CT the patient has, in its style's display
   window (soft tissue for the screening read, bone for the surgical read: a change beyond the window saturates
   and is not seen). A CT change against the patient's healthy appearance is seen only as an object: the eye
   separates it from the noise (in-plane smoothed difference beyond 1.5 noise SD, brighter and darker changes
   apart) and it passes the Rose criterion (mean contrast / noise SD x sqrt(size in noise-correlation cells) > k);
2. finds the lesion as the hottest spot of its own PET view in the referred region (the finding is the
   above-threshold blob around it; no finding, no contour) and keeps the connected visible region within its
   reach of that finding: the sensitive style (label A) takes uptake above its SUV threshold *or* any visible
   CT change, soft tissue included; the specific style (label B) takes bone (or abscess cavity) that shows a
   visible CT change object touching its hot finding (the whole object within reach, so a cold sequestrum,
   cavity or partly destroyed cortex beside hot bone is included) - B may therefore contour what A's threshold
   and soft-tissue window missed;
3. decides on the ambiguous structures (a second low-grade focus, sterile inflammation next to the focus,
   periosteal reaction, a sinus tract, an abscess) with the style's probabilities;
4. contours slice by slice: closes and fills the outline, moves its edge by its own smooth random offset, and
   drops first and last slices whose contour is smaller than the reader is willing to draw.

Every random part of a read (threshold error, edge offset) comes from that reader's own stream, so two readers'
boundary errors are independent. The visibility rule of a read (``visibility_rule``: uptake of the eye's PET
above the read's threshold, or a CT object it sees) is what a test checks each mask against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from ..preprocessing.intensity import BONE_WINDOW_LEVEL_HU, BONE_WINDOW_WIDTH_HU
from .geometry import bounding_box, distance_mm
from .literature import READER_SOURCES, VISIBILITY

# The eye averages image noise over about 2 mm, in the PET and in each CT slice
EYE_SIGMA_MM = 2.0
# A CT change forms an object where the eye's difference image exceeds this many noise SDs (set on pure noise,
# see READING_ASSUMPTIONS["readers.ct_objects"])
CT_OBJECT_LEVEL_SD = 1.5
# Display windows (low, high HU): soft tissue W400/L40 for the fused screening read, bone W1500/L350 (the paper's
# equation 7) for the surgical read; outside its window a change saturates and is not seen
SOFT_TISSUE_WINDOW_HU = (-160.0, 240.0)
BONE_WINDOW_HU = (BONE_WINDOW_LEVEL_HU - BONE_WINDOW_WIDTH_HU / 2, BONE_WINDOW_LEVEL_HU + BONE_WINDOW_WIDTH_HU / 2)
# The referral names a site: the reader looks for the lesion within the focus's bounding box grown by this
REFERRAL_MARGIN_MM = 10.0
# A read's threshold error varies smoothly over about the PET resolution
THRESHOLD_ERROR_SCALE_MM = 6.0

Box = tuple[slice, ...]  # a box of the CT grid (z, y, x)


@dataclass(frozen=True)
class ReaderStyle:
    """The distributions one style of reading draws from (ranges are uniform, probabilities per read)."""

    name: str
    description: str
    pet_threshold_suv: tuple[float, float]
    rose_k: tuple[float, float]  # a CT change object is seen when its Rose SNR exceeds k
    ct_window_hu: tuple[float, float]  # the display window the style reads the CT in
    needs_both: bool  # True: bone or cavity with a CT change object touching the hot finding; False: either
    reach_mm: tuple[float, float]  # how far beyond the finding (the hot blob) the contour may extend
    include: dict[str, float] = field(default_factory=dict)  # probability of including each ambiguous structure
    min_slice_area_mm2: tuple[float, float] = (5.0, 15.0)
    closing_mm: tuple[float, float] = (1.0, 2.0)
    jitter_mm: tuple[float, float] = (0.5, 1.0)
    threshold_error: tuple[float, float] = (0.05, 0.10)  # relative SD of the read's smooth threshold error


STYLES = {
    "sensitive": ReaderStyle(
        name="sensitive",
        description="Label A, high sensitivity (screening): FDG uptake above an absolute SUV threshold of 2.0-2.5 "
        "or any visible CT change connected to the focus, soft-tissue oedema and stranding included",
        pet_threshold_suv=(2.0, 2.5), rose_k=VISIBILITY["rose_k"].range, ct_window_hu=SOFT_TISSUE_WINDOW_HU,
        needs_both=False, reach_mm=(20.0, 35.0),
        include={"second_low_grade_focus": 0.9, "sterile_inflammation": 0.5, "periosteal_reaction": 0.9,
                 "sinus_tract": 0.9, "abscess": 1.0},
        min_slice_area_mm2=(5.0, 15.0), closing_mm=(2.0, 3.0), jitter_mm=(0.5, 1.0),
        threshold_error=VISIBILITY["threshold_error"].range),
    "specific": ReaderStyle(
        name="specific",
        description="Label B, high specificity (surgical): bone (or abscess cavity) that shows a visible CT change "
        "touching uptake above SUV 2.5-3.5 (the non-infected mean is 3.0 in Wenter 2017), core only",
        pet_threshold_suv=(2.5, 3.5), rose_k=VISIBILITY["rose_k"].range, ct_window_hu=BONE_WINDOW_HU,
        needs_both=True, reach_mm=(2.0, 5.0),
        include={"second_low_grade_focus": 0.3, "sterile_inflammation": 0.0, "periosteal_reaction": 0.3,
                 "sinus_tract": 0.2, "abscess": 0.6},
        min_slice_area_mm2=(20.0, 50.0), closing_mm=(1.0, 1.5), jitter_mm=(0.3, 0.6),
        threshold_error=VISIBILITY["threshold_error"].range),
}


def reader_names(reader_count: int) -> list[tuple[str, str]]:
    """(label name, style) of ``reader_count`` readers: label A and label B first, then alternating styles."""
    if reader_count < 1:
        raise ValueError(f"--reader-count must be at least 1, got {reader_count}")
    names = [("label_a", "sensitive"), ("label_b", "specific")]
    for k in range(3, reader_count + 1):
        names.append((f"reader_{k}", "sensitive" if k % 2 else "specific"))
    return names[:reader_count]


@dataclass
class ReaderDraw:
    """The parameters of one read: one reader, one patient."""

    style: str
    pet_threshold_suv: float
    rose_k: float
    ct_window_hu: tuple[float, float]
    needs_both: bool
    reach_mm: float
    include: dict[str, bool]
    min_slice_area_mm2: float
    closing_mm: float
    jitter_mm: float
    threshold_error: float

    def as_dict(self) -> dict:
        """JSON-friendly record (written to the patient's meta.json)."""
        return asdict(self)


def draw_reader(style: ReaderStyle, rng: np.random.Generator) -> ReaderDraw:
    """One read's parameters from the style's distributions."""
    return ReaderDraw(
        style=style.name, pet_threshold_suv=float(rng.uniform(*style.pet_threshold_suv)),
        rose_k=float(rng.uniform(*style.rose_k)), ct_window_hu=style.ct_window_hu, needs_both=style.needs_both,
        reach_mm=float(rng.uniform(*style.reach_mm)),
        include={k: bool(rng.uniform() < p) for k, p in sorted(style.include.items())},
        min_slice_area_mm2=float(rng.uniform(*style.min_slice_area_mm2)),
        closing_mm=float(rng.uniform(*style.closing_mm)), jitter_mm=float(rng.uniform(*style.jitter_mm)),
        threshold_error=float(rng.uniform(*style.threshold_error)))


@dataclass
class ReaderView:
    """What the readers look at, on the CT grid (z, y, x), and the anatomy they know."""

    pet: np.ndarray  # registered PET as displayed (with noise)
    ct_hu: np.ndarray  # the CT as written (noisy)
    ct_healthy_hu: np.ndarray  # the patient's healthy appearance (noise-free; blur and metal streaks included)
    ct_noise_sd: float  # noise SD of the CT (HU)
    ct_noise_cell_voxels: float  # voxels per independent CT noise sample
    ct_change_hu: np.ndarray  # noise-free |diseased - healthy| CT after the scanner's blur (for checks only)
    maps: dict[str, np.ndarray]  # body, bone, focus_id, and the ambiguous structures
    focus_grades: list[str]
    spacing_zyx: tuple[float, float, float]


def eye_pet(view: ReaderView, box: Box | None = None) -> np.ndarray:
    """The registered noisy PET as the eye sees it (averaged over ~2 mm)."""
    box = box or tuple(slice(None) for _ in view.pet.shape)
    return ndimage.gaussian_filter(view.pet[box], sigma=[EYE_SIGMA_MM / s for s in view.spacing_zyx])


def seen_ct_change(view: ReaderView, window_hu: tuple[float, float], box: Box | None = None) -> np.ndarray:
    """The displayed CT minus the patient's healthy appearance, both in the reader's window (signed HU)."""
    box = box or tuple(slice(None) for _ in view.pet.shape)
    low, high = window_hu
    return np.clip(view.ct_hu[box].astype(np.float32), low, high) - np.clip(view.ct_healthy_hu[box], low, high)


def ct_objects(view: ReaderView, window_hu: tuple[float, float], box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CT-change objects the eye separates from the noise (labels, 0 = none) and each object's Rose SNR."""
    seen = seen_ct_change(view, window_hu, box)
    # each axial slice is read on its own: the eye averages in-plane only
    smoothed = ndimage.gaussian_filter(seen, sigma=[0, EYE_SIGMA_MM / view.spacing_zyx[1],
                                                    EYE_SIGMA_MM / view.spacing_zyx[2]])
    labels = np.zeros(seen.shape, np.int32)
    snr = [0.0]
    for sign in (1.0, -1.0):  # a brighter and a darker change are different objects
        parts, n = ndimage.label(sign * smoothed > CT_OBJECT_LEVEL_SD * view.ct_noise_sd)
        if n == 0:
            continue
        size = np.bincount(parts.ravel(), minlength=n + 1)[1:]
        total = np.bincount(parts.ravel(), weights=seen.ravel(), minlength=n + 1)[1:]
        contrast = sign * total / size / view.ct_noise_sd  # mean contrast over the object, in noise SDs
        labels[parts > 0] = parts[parts > 0] + len(snr) - 1
        snr.extend(contrast * np.sqrt(size / view.ct_noise_cell_voxels))
    return labels, np.asarray(snr)


def visible_ct_change(view: ReaderView, draw: ReaderDraw, box: Box | None = None) -> np.ndarray:
    """Voxels of the CT-change objects a read sees (Rose SNR above its k)."""
    labels, snr = ct_objects(view, draw.ct_window_hu, box)
    return (snr > draw.rose_k)[labels] & (labels > 0)


def visibility_rule(view: ReaderView, draw: ReaderDraw, box: Box | None = None) -> np.ndarray:
    """Voxels a read may call lesion: the eye's PET above its threshold or a CT-change object it sees."""
    return (eye_pet(view, box) > draw.pet_threshold_suv) | visible_ct_change(view, draw, box)


def threshold_error_field(shape: tuple[int, ...], spacing_zyx, sd: float, rng: np.random.Generator) -> np.ndarray:
    """A read's smooth relative threshold error (1 + e, e of SD ``sd``) over a box."""
    coarse_shape = [max(2, int(np.ceil(n * s / THRESHOLD_ERROR_SCALE_MM)) + 1) for n, s in zip(shape, spacing_zyx)]
    coarse = rng.normal(0, 1, size=coarse_shape)
    error = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse_shape)], order=1)
    error = error[tuple(slice(0, n) for n in shape)]
    return (1 + error / (error.std() + 1e-6) * sd).astype(np.float32)


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


def _allowed(view: ReaderView, draw: ReaderDraw, box: Box) -> np.ndarray:
    """Voxels the read may contour at all: body, no metal, and none of the structures it decided to leave out."""
    m = view.maps
    allowed = m["body"][box] & ~m["metal"][box]
    if not draw.include["periosteal_reaction"]:
        allowed &= ~m["periosteal"][box]
    if not draw.include["sinus_tract"]:
        allowed &= ~m["sinus_tract"][box]
    if not draw.include["abscess"]:
        allowed &= ~m["abscess"][box]
    if not draw.include["sterile_inflammation"]:
        # the soft-tissue uptake beside the inflammation is left out too (bone is judged on its own)
        allowed &= ~(ndimage.binary_dilation(m["inflammation"][box], iterations=2) & ~m["bone"][box])
    return allowed


def _finding(pet_seen: np.ndarray, uptake: np.ndarray, referred: np.ndarray) -> np.ndarray | None:
    """The above-threshold blob around the hottest spot of the referred region (None: nothing hot there)."""
    if not referred.any():
        return None
    hottest = np.unravel_index(np.argmax(np.where(referred, pet_seen, -np.inf)), pet_seen.shape)
    if not uptake[hottest]:
        return None
    blobs, _ = ndimage.label(uptake)
    return blobs == blobs[hottest]


def _touching(parts: np.ndarray, finding: np.ndarray) -> np.ndarray:
    """The union of the labelled parts that touch the finding (share a voxel or a face with it)."""
    touched = np.unique(parts[ndimage.binary_dilation(finding) & (parts > 0)])
    return np.isin(parts, touched)


def read_focus(view: ReaderView, draw: ReaderDraw, number: int,
               rng: np.random.Generator) -> tuple[Box, np.ndarray] | None:
    """One read of one referred focus: (box, region in the box), or None when the reader finds nothing there."""
    spacing = view.spacing_zyx
    referral = bounding_box(view.maps["focus_id"] == number, [int(np.ceil(REFERRAL_MARGIN_MM / s)) for s in spacing])
    if referral is None:
        return None
    # the analysed box: the referral grown by the reach, so that the contour is not cut short
    grow = [int(np.ceil((draw.reach_mm + 6) / s)) for s in spacing]
    box = tuple(slice(max(r.start - g, 0), min(r.stop + g, n)) for r, g, n in zip(referral, grow, view.pet.shape))
    referred = np.zeros(tuple(b.stop - b.start for b in box), bool)
    referred[tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(referral, box))] = True
    allowed = _allowed(view, draw, box)
    pet_seen = eye_pet(view, box)
    threshold = draw.pet_threshold_suv * threshold_error_field(pet_seen.shape, spacing, draw.threshold_error, rng)
    uptake = (pet_seen > threshold) & allowed
    finding = _finding(pet_seen, uptake, referred & allowed)
    if finding is None:
        return None
    labels, snr = ct_objects(view, draw.ct_window_hu, box)
    seen_objects = np.where((snr > draw.rose_k)[labels], labels, 0)
    within_reach = distance_mm(finding, spacing, draw.reach_mm) <= draw.reach_mm
    if draw.needs_both:
        # bone or cavity whose CT change object touches the hot finding: the whole object within reach
        bone_or_cavity = np.any([view.maps[k][box] for k in ("bone", "periosteal", "abscess", "sinus_tract")], axis=0)
        return box, _touching(seen_objects, finding) & bone_or_cavity & allowed & within_reach
    candidate = (uptake | (seen_objects > 0)) & allowed & within_reach
    parts, _ = ndimage.label(candidate)
    return box, _touching(parts, finding) & candidate


def read_patient(view: ReaderView, draw: ReaderDraw, rng: np.random.Generator) -> np.ndarray:
    """One reader's mask of one patient on the CT grid."""
    label = np.zeros(view.pet.shape, bool)
    for number, grade in enumerate(view.focus_grades, start=1):
        if number > 1 and grade == "low" and not draw.include["second_low_grade_focus"]:
            continue
        read = read_focus(view, draw, number, rng)
        if read is not None:
            box, region = read
            label[box] |= _contour_slices(region, draw, view.spacing_zyx[1], rng)
    return label & view.maps["body"] & ~view.maps["metal"]  # readers contour around the hardware, never over it


READING_ASSUMPTIONS = {
    "readers.model": "readers contour what the images show (see studylib/synthetic/readers.py): each read finds the "
    "lesion as the hottest spot of its own PET view in the referred region (the focus's bounding box grown by "
    f"{REFERRAL_MARGIN_MM:g} mm), never from the phantom's core, and draws its thresholds, reach, decisions and "
    "contouring habits from its style, with its own threshold error and edge offset; agreement between A and B "
    "is an outcome of the images and the styles, never a parameter",
    **{f"readers.{name}": f"{s.description}; reach {s.reach_mm[0]:g}-{s.reach_mm[1]:g} mm beyond the hot finding; "
       f"CT read in the window {s.ct_window_hu[0]:g} to {s.ct_window_hu[1]:g} HU, change objects seen above Rose k "
       f"{s.rose_k[0]:g}-{s.rose_k[1]:g}; includes "
       + ", ".join(f"{k.replace('_', ' ')} {p:.0%}" for k, p in sorted(s.include.items()))
       + f"; closing {s.closing_mm[0]:g}-{s.closing_mm[1]:g} mm, edge jitter {s.jitter_mm[0]:g}-{s.jitter_mm[1]:g} mm; "
       f"threshold error {s.threshold_error[0]:.0%}-{s.threshold_error[1]:.0%} (SD, smooth over "
       f"{THRESHOLD_ERROR_SCALE_MM:g} mm); end slices under {s.min_slice_area_mm2[0]:g}-{s.min_slice_area_mm2[1]:g} "
       "mm2 are not drawn"
       for name, s in STYLES.items()},
    "readers.sources": READER_SOURCES["thresholds"],
    **{f"readers.{name}": parameter.describe() for name, parameter in VISIBILITY.items()},
    "readers.ct_objects": f"a CT change is judged on the noisy CT against the patient's healthy appearance (metal "
    f"streaks recognised as artefact); the eye averages each slice over {EYE_SIGMA_MM:g} mm and separates an object "
    f"where that difference exceeds {CT_OBJECT_LEVEL_SD:g} noise SD (positive and negative changes apart); "
    f"{CT_OBJECT_LEVEL_SD:g} was chosen on simulated pure CT noise (no cohort): at quick-scale voxels noise alone "
    "then forms about 40 (k 3), 3 (k 4) and 0.1 (k 5) small objects that pass the Rose criterion per 144 000 "
    "voxels, against 70-420 at a level of 1.0 (at paper-scale voxels the 2 mm average leaves almost none)",
    "readers.windows": "display windows: soft tissue W400/L40 (standard for fused PET-CT and soft tissue) for the "
    "screening style, bone W1500/L350 (the paper's equation 7) for the surgical style",
    "readers.development": "the edge-jitter ranges were narrowed on the development seed (A 0.8-1.5 -> 0.5-1.0 mm, "
    "B 0.4-0.8 -> 0.3-0.6 mm) because wider jitter put more than 10 % of a contour outside anything visible; "
    "agreement was not looked at for that choice. Reading from image findings: the Rose k range, threshold error, "
    f"referral margin ({REFERRAL_MARGIN_MM:g} mm) and the object level (on pure noise) were set before any cohort "
    "was generated; on the development seed (1000, quick scale, 16 patients) the first version, with both styles "
    "reading the CT in one window, still left B inside A (0-2 B-only voxels per patient, largest |Dice - 2/(1+r)| "
    "0.002), which is why each style reads the CT in its own display window (seen on the same seed: B-only voxels "
    "in 13 of 16 patients, largest deviation 0.07); no reported seed was generated for any of these choices",
}
