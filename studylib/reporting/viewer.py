"""Per-patient viewer volumes and pages: CT, PET fused, every label, every model family's prediction and the
disagreement maps of one test patient, on one display grid, for Niivue (the report's pages, notebook 04).

The display grid is the patient's CT grid cropped to the body (plus a margin) and, when that still holds more than
``MAX_DISPLAY_VOXELS``, averaged over k x k x k voxel blocks (a mask keeps a block when any of its voxels is in it);
each page and the notebook say so on screen. The scored volumes are always the full-resolution ones.

A report page embeds its volumes (gzipped NIfTI, base64) and loads the vendored Niivue bundle
(``reporting/niivue/niivue.umd.js``) from beside it with a ``<script>`` tag: it opens from disk (``file://``, where
Chromium refuses ``fetch`` of a neighbouring file), needs no server and no network, and moves with the report.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..ingest.imageio import ImageGeometry
from ..ingest.modalities import MODALITY_NAMES
from ..plans.results_folder import (
    AGGREGATE,
    CACHE,
    DISAGREEMENT_MAPS,
    PLAN,
    PREDICTIONS,
    PROFILE_SNAPSHOT,
    REPORT,
    SPLITS,
    VIEWER,
    viewer_page_file,
)
from ..preprocessing.cache import CACHE_META, CACHE_NATIVE
from ..preprocessing.intensity import BONE_WINDOW_LEVEL_HU, BONE_WINDOW_WIDTH_HU

NIIVUE_DIR = Path(__file__).resolve().parent / "niivue"
NIIVUE_BUNDLE = "niivue.umd.js"
PAGE_TEMPLATE = Path(__file__).resolve().parent / "viewer_page.html"

MAX_DISPLAY_VOXELS = 4_000_000  # about 160^3: a page of a few MB that a laptop's browser loads in a second
BODY_MARGIN_VOXELS = 4
PET_SUV_STEP = 0.01  # PET is stored as int16 with this scale slope (SUV to 0.01, up to 327 SUV)

SOFT_TISSUE_WINDOW_WIDTH_HU, SOFT_TISSUE_WINDOW_LEVEL_HU = 400.0, 40.0  # the usual soft-tissue window


def window_range(width: float, level: float) -> tuple[float, float]:
    """The HU range (lowest, highest) a window of ``width`` centred on ``level`` shows."""
    return level - width / 2, level + width / 2


# The bone window is the one the models see (the paper's W1500/L350); the soft-tissue window shows the edema.
CT_WINDOWS = {"bone": window_range(BONE_WINDOW_WIDTH_HU, BONE_WINDOW_LEVEL_HU),
              "soft tissue": window_range(SOFT_TISSUE_WINDOW_WIDTH_HU, SOFT_TISSUE_WINDOW_LEVEL_HU)}

# Mask colours (RGB, 0-255): readers and targets first, then the model families, then the disagreement maps.
LABEL_COLOURS = {"label_a": (230, 41, 55), "label_b": (0, 121, 241), "reader_3": (200, 122, 255),
                 "reader_4": (255, 161, 0), "truth": (253, 249, 0), "consensus": (0, 228, 48),
                 "union": (255, 109, 194), "intersection": (102, 191, 255)}
OTHER_COLOURS = [(255, 128, 0), (0, 255, 255), (255, 0, 255), (128, 255, 0), (211, 176, 131), (135, 60, 190),
                 (0, 158, 47), (190, 33, 55), (0, 82, 172), (127, 106, 79), (255, 203, 0), (255, 255, 255)]


@dataclass
class Layer:
    """One volume of a patient's view: an image (CT, PET), a mask (label, prediction) or a count map."""

    key: str
    name: str
    group: str  # "image", "label", "prediction" or "disagreement"
    array: np.ndarray  # on the display grid, (z, y, x)
    cal_min: float
    cal_max: float
    visible: bool = True
    colour: tuple[int, int, int] | None = None  # masks and count maps; images use a named colour map
    colormap: str = "gray"
    slope: float = 1.0  # stored value x slope = the value shown (PET: SUV)
    unit: str = ""
    source: str = ""  # where it comes from, relative to the results folder


@dataclass
class DisplayPatient:
    """One patient's layers on the display grid, and how that grid was made from the CT grid."""

    patient_id: str
    geometry: ImageGeometry  # the display grid
    ct_shape: tuple[int, int, int]  # (z, y, x) of the CT grid
    box: tuple[slice, slice, slice]  # the crop on the CT grid (z, y, x)
    factor: int  # block size of the averaging (1: none)
    focus: tuple[int, int, int]  # (z, y, x) on the display grid where the view opens: the labels' centre
    layers: list[Layer] = field(default_factory=list)
    fold: int | None = None

    def note(self) -> str:
        """What the display grid is, in words (shown on screen)."""
        shape = tuple(s.stop - s.start for s in self.box)
        crop = ("the whole CT grid" if shape == self.ct_shape else
                f"cropped to the body ({' x '.join(map(str, shape[::-1]))} of {' x '.join(map(str, self.ct_shape[::-1]))} "
                "CT voxels, x y z)")
        if self.factor == 1:
            return f"Shown at full CT resolution, {crop}."
        return (f"Shown {crop}, then downsampled for display: {self.factor} x {self.factor} x {self.factor} voxel "
                f"blocks averaged (masks: a block is in a mask when any of its voxels is); the metrics were computed "
                f"at full resolution.")


def display_box(mask: np.ndarray, margin: int = BODY_MARGIN_VOXELS) -> tuple[slice, slice, slice]:
    """The bounding box of ``mask`` widened by ``margin`` voxels, within the array (all of it when empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)))
    return tuple(box)


def block_factor(shape: Sequence[int], max_voxels: int = MAX_DISPLAY_VOXELS) -> int:
    """The smallest block size k such that averaging k x k x k blocks leaves at most ``max_voxels`` voxels."""
    k = 1
    while math.prod(math.ceil(n / k) for n in shape) > max_voxels:
        k += 1
    return k


def block_reduce(array: np.ndarray, factor: int, reduce: str = "mean") -> np.ndarray:
    """Average (``mean``) or take the maximum (``max``, for masks) over ``factor``-cubed blocks; edges padded by
    repeating the last voxel."""
    if factor == 1:
        return array
    pad = [(0, (-n) % factor) for n in array.shape]
    padded = np.pad(array, pad, mode="edge")
    z, y, x = (n // factor for n in padded.shape)
    blocks = padded.reshape(z, factor, y, factor, x, factor)
    if reduce == "max":
        return blocks.max(axis=(1, 3, 5))
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64)


def display_geometry(geometry: ImageGeometry, box: tuple[slice, slice, slice], factor: int,
                     shape_zyx: Sequence[int]) -> ImageGeometry:
    """The grid of a crop ``box`` (z, y, x) of ``geometry`` averaged over ``factor`` blocks: each display voxel
    sits at the centre of its block."""
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    spacing = np.asarray(geometry.spacing, float)
    first = np.array([box[2].start, box[1].start, box[0].start], float) + (factor - 1) / 2.0  # x, y, z index
    origin = np.asarray(geometry.origin, float) + direction @ (spacing * first)
    return ImageGeometry(tuple(int(n) for n in shape_zyx[::-1]), tuple(float(s) for s in spacing * factor),
                         tuple(float(o) for o in origin), tuple(geometry.direction))


def focus_voxel(masks: Sequence[np.ndarray], shape: Sequence[int]) -> tuple[int, int, int]:
    """The voxel (z, y, x) at the centre of mass of the masks' union; the grid's centre when they are empty."""
    union = np.zeros(shape, bool)
    for mask in masks:
        union |= mask.astype(bool)
    if not union.any():
        return tuple(n // 2 for n in shape)
    return tuple(int(round(float(c.mean()))) for c in np.nonzero(union))


def ras_mm(geometry: ImageGeometry, voxel_zyx: Sequence[int]) -> list[float]:
    """The world position (RAS mm, as NIfTI viewers give it) of a voxel (z, y, x) of ``geometry`` (ITK: LPS)."""
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    index = np.array(voxel_zyx[::-1], float)
    lps = np.asarray(geometry.origin, float) + direction @ (np.asarray(geometry.spacing, float) * index)
    return [float(-lps[0]), float(-lps[1]), float(lps[2])]


def focus_fraction(geometry: ImageGeometry, voxel_zyx: Sequence[int]) -> list[float]:
    """Niivue's crosshair position (fractions along R, A, S of the volume turned to its nearest RAS orientation) of
    a voxel (z, y, x) of ``geometry``."""
    ras = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(geometry.direction, float).reshape(3, 3)
    index, size = voxel_zyx[::-1], geometry.size
    fraction = [0.5, 0.5, 0.5]
    for axis in range(3):  # the world axis each image axis runs along, and which way
        world = int(np.argmax(np.abs(ras[:, axis])))
        along = (index[axis] + 0.5) / size[axis]
        fraction[world] = float(along if ras[world, axis] > 0 else 1.0 - along)
    return fraction


def nifti_gz_bytes(array: np.ndarray, geometry: ImageGeometry, slope: float = 1.0) -> bytes:
    """A gzipped NIfTI-1 file of ``array`` (z, y, x) on ``geometry``, with scale slope ``slope`` in its header."""
    import SimpleITK as sitk

    from ..ingest.imageio import image_from_array

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.nii"
        sitk.WriteImage(image_from_array(array, geometry), str(path), useCompression=False)
        data = bytearray(path.read_bytes())
    if struct.unpack_from("<i", data, 0)[0] != 348:
        raise ValueError("SimpleITK wrote a NIfTI header that is not little-endian NIfTI-1")
    struct.pack_into("<ff", data, 112, slope, 0.0)  # scl_slope, scl_inter
    return gzip.compress(bytes(data), compresslevel=6, mtime=0)


def mask_colours(keys: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per mask layer: the fixed ones of readers and targets, the next unused of a list for the rest."""
    colours, spare = {}, iter(c for c in OTHER_COLOURS)
    for key in keys:
        label = key.removeprefix("label:")
        colours[key] = LABEL_COLOURS.get(label) if key.startswith("label:") and label in LABEL_COLOURS else next(
            spare, (255, 255, 255))
    return colours


def _pet_on_ct(results: Path, record, ct) -> np.ndarray | None:
    """The patient's PET (SUV) resampled onto its CT grid through the registration the cache recorded."""
    import SimpleITK as sitk

    from ..ingest.imageio import read_image
    from ..preprocessing.registration import resample_to, transform_from_record

    if "pet" not in record.images:
        return None
    pet = read_image(record.images["pet"], record.patient_id, "PT")
    meta = json.loads((results / CACHE / record.patient_id / CACHE_META).read_text())
    return sitk.GetArrayFromImage(resample_to(pet, ct, transform_from_record(meta["registration"])))


def test_fold(results: Path, patient_id: str) -> int | None:
    """The fold whose test set holds the patient (None when no fold does)."""
    splits = json.loads((results / SPLITS).read_text())
    return next((fold for fold, split in enumerate(splits) if patient_id in split["test"]), None)


def prediction_files(results: Path, patient_id: str) -> dict[tuple[str, str], Path]:
    """The patient's prediction of every model family {(modality, model): file}, from the run whose test set holds
    the patient, at the study's first seed and primary share of lesion-free slices (the report's primary rows)."""
    from ..inference.volume import prediction_patient
    from ..plans.profiles import load_profile
    from .aggregate import planned_cells

    profile = load_profile(results / PROFILE_SNAPSHOT)
    plan = json.loads((results / PLAN).read_text())
    background = plan.get("primary_background_fraction", min(profile.study.background_fractions))
    seed, fold = profile.study.seeds[0], test_fold(results, patient_id)
    found = {}
    for run, cell in planned_cells(results):
        if (cell.fold, cell.seed) != (fold, seed) or not math.isclose(cell.background_fraction, background):
            continue
        for path in sorted(run.glob(f"{PREDICTIONS}/{patient_id}*.nii.gz")):
            stem = path.name.removesuffix(".nii.gz")
            if prediction_patient(stem) == patient_id:
                model = stem.split("__", 1)[1] if "__" in stem else cell.label
                found[(cell.modality, model)] = path
    return dict(sorted(found.items()))


def display_patient(results: str | os.PathLike, patient_id: str,
                    max_voxels: int = MAX_DISPLAY_VOXELS) -> DisplayPatient:
    """Every layer of one patient of a results folder on one display grid (cropped and, if needed, downsampled)."""
    import SimpleITK as sitk

    from ..ingest.cohort import load_cohort
    from ..ingest.imageio import read_image
    from ..preprocessing.cache import load_native

    results = Path(results).resolve()
    plan = json.loads((results / PLAN).read_text())
    record = load_cohort(results / plan["cohort"]).patient(patient_id)
    ct_image = read_image(record.images["ct"], patient_id, "CT")
    ct = sitk.GetArrayFromImage(ct_image)
    labels, body = load_native(results / CACHE, patient_id)
    box = display_box(body)
    shape = tuple(s.stop - s.start for s in box)
    k = block_factor(shape, max_voxels)

    def image(array: np.ndarray) -> np.ndarray:
        return block_reduce(array[box].astype(np.float32), k, "mean")

    def mask(array: np.ndarray) -> np.ndarray:
        return block_reduce(array[box].astype(np.uint8), k, "max")

    def relative(path: Path) -> str:
        return os.path.relpath(path, results)

    ct_display = np.round(image(ct)).astype(np.int16)
    geometry = display_geometry(ImageGeometry.of_image(ct_image), box, k, ct_display.shape)
    layers = [Layer("ct", "CT", "image", ct_display, *CT_WINDOWS["bone"], unit="HU", source=relative(Path(
        record.images["ct"]).resolve()) if Path(record.images["ct"]).resolve().is_relative_to(results) else "the cohort's CT")]
    pet = _pet_on_ct(results, record, ct_image)
    if pet is not None:
        pet_display = np.clip(np.round(image(pet) / PET_SUV_STEP), -32768, 32767).astype(np.int16)
        top = float(np.percentile(pet_display[pet_display > 0], 99.9)) * PET_SUV_STEP if (pet_display > 0).any() else 1.0
        layers.append(Layer("pet", "PET (SUV)", "image", pet_display, min(1.0, top / 2), max(top, 2.0),
                            colormap="hot", slope=PET_SUV_STEP, unit="SUV", source="PET registered onto the CT grid"))
    colours = mask_colours([f"label:{k}" for k in sorted(labels)])
    for name in sorted(labels, key=lambda n: (n == "truth", n not in LABEL_COLOURS, n)):
        layers.append(Layer(f"label.{name}", name, "label", mask(labels[name]), 0.5, 1.0,
                            visible=name in ("label_a", "label_b"), colour=colours[f"label:{name}"],
                            source=relative(results / CACHE / patient_id / CACHE_NATIVE)))
    predictions = prediction_files(results, patient_id)
    spare = iter(OTHER_COLOURS)
    for (modality, model), path in predictions.items():
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(bool)
        layers.append(Layer(f"pred.{modality}.{model}", f"model {model} ({MODALITY_NAMES.get(modality, modality)})",
                            "prediction", mask(array), 0.5, 1.0,
                            visible=False, colour=next(spare, (255, 255, 255)), source=relative(path)))
    for path in sorted((results / AGGREGATE / DISAGREEMENT_MAPS).glob(f"{patient_id}__*.nii.gz")):
        counts = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.uint8)
        what = path.name.removesuffix(".nii.gz").split("__", 1)[1].replace("__", " ")
        top = max(int(counts.max()), 1)
        layers.append(Layer(f"votes.{what.replace(' ', '.')}", f"votes: {what}", "disagreement", mask(counts),
                            0.5, float(top), visible=False, colormap="warm", unit="votes", source=relative(path)))
    focus = focus_voxel([layer.array for layer in layers if layer.group == "label"], ct_display.shape)
    return DisplayPatient(patient_id, geometry, ct.shape, box, k, focus, layers, test_fold(results, patient_id))


def write_display_volumes(patient: DisplayPatient, folder: str | os.PathLike) -> dict[str, Path]:
    """Each layer as a gzipped NIfTI file in ``folder`` (for ipyniivue, which loads files): {key: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for layer in patient.layers:
        path = folder / f"{patient.patient_id}__{layer.key}.nii.gz"
        path.write_bytes(nifti_gz_bytes(layer.array, patient.geometry, layer.slope))
        written[layer.key] = path
    return written


def page_layers(patient: DisplayPatient) -> list[dict]:
    """The layers as the page's script reads them (volumes as base64 of gzipped NIfTI)."""
    return [{"key": layer.key, "name": layer.name, "group": layer.group, "calMin": layer.cal_min,
             "calMax": layer.cal_max, "visible": layer.visible, "colour": layer.colour, "colormap": layer.colormap,
             "unit": layer.unit, "source": layer.source,
             "base64": base64.b64encode(nifti_gz_bytes(layer.array, patient.geometry, layer.slope)).decode("ascii")}
            for layer in patient.layers]


def viewer_page(patient: DisplayPatient, title: str = "") -> str:
    """The HTML of one patient's viewer page (Niivue loaded from ``niivue.umd.js`` beside it)."""
    settings = {"patient": patient.patient_id, "focusMM": ras_mm(patient.geometry, patient.focus), "ctWindows": CT_WINDOWS,
                "layers": page_layers(patient)}
    heading = f"{patient.patient_id}" + (f" (test patient of fold {patient.fold})" if patient.fold is not None else "")
    replacements = {"{{TITLE}}": html.escape(title or f"Viewer: {patient.patient_id}"),
                    "{{HEADING}}": html.escape(heading), "{{NOTE}}": html.escape(patient.note()),
                    "{{BUNDLE}}": NIIVUE_BUNDLE,
                    "{{SETTINGS}}": json.dumps(settings).replace("</", "<\\/")}
    page = PAGE_TEMPLATE.read_text()
    for marker, value in replacements.items():
        page = page.replace(marker, value)
    return page


def viewer_patients(results: str | os.PathLike) -> list[str]:
    """The test patients of a results folder (every fold's test set), in split order."""
    splits = json.loads((Path(results) / SPLITS).read_text())
    return [pid for split in splits for pid in split["test"]]


def write_viewer_pages(results: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                       patients: Sequence[str] | None = None, max_voxels: int = MAX_DISPLAY_VOXELS) -> list[Path]:
    """A viewer page per test patient in ``out_dir`` (default ``<results>/report/viewer``), with the Niivue bundle
    and its licence beside them."""
    results = Path(results).resolve()
    out = Path(out_dir) if out_dir is not None else results / REPORT / VIEWER
    out.mkdir(parents=True, exist_ok=True)
    for name in (NIIVUE_BUNDLE, "LICENSE"):
        shutil.copyfile(NIIVUE_DIR / name, out / (name if name == NIIVUE_BUNDLE else "NIIVUE_LICENSE"))
    pages = []
    for pid in patients if patients is not None else viewer_patients(results):
        if not (results / CACHE / pid / CACHE_NATIVE).exists():
            continue
        page = out / viewer_page_file(pid)
        page.write_text(viewer_page(display_patient(results, pid, max_voxels)))
        pages.append(page)
    return pages


def extreme_patients(per_run: pd.DataFrame) -> pd.DataFrame:
    """The worst and the best test patient of every model family (modality, training label) by 3D DSC against the
    label the model is meant to reproduce, at the first seed (whose predictions the viewer shows).

    ``per_run``: primary per-patient rows before seed averaging (``aggregate.primary`` of ``per_patient_all.csv``).
    Columns: modality, train_label, ground_truth, which ("worst", "best"), patient_id, dsc, empty_prediction.
    """
    from .aggregate import own_rows

    own = own_rows(per_run)
    own = own[own.seed == own.seed.min()]
    rows = []
    for (modality, label), family in own.groupby(["modality", "train_label"], sort=True):
        ordered = family.sort_values(["dsc", "patient_id"], kind="stable")
        for which, row in (("worst", ordered.iloc[0]), ("best", ordered.iloc[-1])):
            rows.append({"modality": modality, "train_label": label, "ground_truth": row.ground_truth, "which": which,
                         "patient_id": str(row.patient_id), "dsc": float(row.dsc),
                         "empty_prediction": bool(row.get("empty_prediction", False))})
    return pd.DataFrame(rows, columns=["modality", "train_label", "ground_truth", "which", "patient_id", "dsc",
                                       "empty_prediction"])


def viewer_link(patient_id: str, text: str | None = None) -> str:
    """A Markdown link from the report's index page to a patient's viewer page."""
    return f"[{text or patient_id}]({VIEWER}/{viewer_page_file(patient_id)})"
