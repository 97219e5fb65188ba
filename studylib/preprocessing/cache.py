"""The slice cache: one folder per patient with the network's 2D inputs and the CT-grid labels for 3D evaluation.

Written once by ``cache_patient`` (the prepare stage), read by training, inference, predict and the cohort QA.
Per patient: ``images.npy`` (z, C, S, S) float16, ``labels.npy`` (z, L, S, S) uint8, ``native.npz`` (CT-grid labels
and body mask) and ``meta.json`` (cache key, CT geometry, registration, label slices). A soft target
(``targets.SOFT_TARGETS``: the vote fraction k/N) is stored exactly in ``labels.npy`` as its numerator k (the vote
count) with its divisor N in ``meta.json`` (``label_divisors``); it is left out of ``native.npz``, whose labels are the
binary masks every model is scored against.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ingest.cohort import split_label_source
from ..ingest.imageio import ImageGeometry
from .intensity import body_mask
from .patient_on_ct import PreprocessConfig, load_patient_on_ct, normalise_channels
from .slices import resize_slices
from .targets import SOFT_TARGETS, derived_targets


def file_digest(paths: list[str]) -> str:
    """SHA-1 over the bytes of input files (DICOM folders: over their sorted files)."""
    h = hashlib.sha1()
    for p in paths:
        path = Path(split_label_source(p)[2])
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                h.update(f.name.encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()


@dataclass
class CachedPatient:
    """Preprocessed 2D slices of one patient: images (z, C, S, S) float16, labels (z, L, S, S) uint8."""

    patient_id: str
    images: np.ndarray
    labels: np.ndarray
    channel_names: list[str]
    label_names: list[str]
    meta: dict

    @property
    def geometry(self) -> ImageGeometry:
        """The CT grid of the patient (its predictions are restored to it)."""
        return ImageGeometry.from_record(self.meta["ct_geometry"])

    @property
    def fit(self) -> str:
        """How non-square slices were fitted to the network's size (caches before 'fit' existed stretched)."""
        return self.meta.get("fit", "stretch")

    def label_divisor(self, label: str) -> int:
        """What ``labels`` of ``label`` are divided by to give the target: N for a vote fraction stored as counts, 1
        for a mask."""
        return int(self.meta.get("label_divisors", {}).get(label, 1))

    def channel_index(self, channels: list[str]) -> list[int]:
        """Positions of the named channels in ``images``."""
        missing = [c for c in channels if c not in self.channel_names]
        if missing:
            raise KeyError(f"patient {self.patient_id}: no channel {missing} (has {self.channel_names})")
        return [self.channel_names.index(c) for c in channels]


# Bumped whenever the code that fills a cache changes its arrays (preprocessing, registration, readers of DICOM
# and NIfTI, derived targets): a cache written by other code is then rebuilt, never reused. 5: the key names the
# label sources (RTSTRUCT ROI, SEG segment) and label names.
CACHE_VERSION = 5

# Files of one patient's cache folder.
CACHE_META = "meta.json"  # what was cached, from what, with which settings (the cache key)
CACHE_SLICES = "images.npy"  # (z, C, S, S) model inputs
CACHE_SLICE_LABELS = "labels.npy"  # (z, L, S, S) masks on the same slices
CACHE_NATIVE = "native.npz"  # labels and body mask on the CT grid, for 3D scoring


def cache_key(record, config: PreprocessConfig, seed: int) -> dict:
    """Everything that defines a patient's cached arrays: input bytes, which structure of a DICOM label file each
    label is, label and channel names, preprocessing settings, seed and code version."""
    sources = [str(record.images[m]) for m in sorted(record.images)] + [record.labels[k] for k in sorted(record.labels)]
    # the bytes alone miss a switch to another ROI or segment of the same file; paths are left out so that a
    # moved cohort keeps its cache
    structures = {name: list(split_label_source(record.labels[name])[:2]) for name in sorted(record.labels)}
    return {"params": config.cache_key(), "inputs": file_digest(sources), "channels": sorted(record.images),
            "labels": structures, "seed": seed, "version": CACHE_VERSION}


def cache_patient(record, config: PreprocessConfig, cache_dir: str | os.PathLike, seed: int = 0,
                  derived: Sequence[str] = (), reader_labels: Sequence[str] = ()) -> CachedPatient:
    """Preprocess one patient into ``cache_dir/<id>/`` unless a cache with the same inputs/parameters exists.

    ``derived`` targets (``targets.DERIVED_TARGETS``: STAPLE consensus, union, intersection, vote fraction of the
    ``reader_labels``) are computed on the CT grid and cached like the other labels (a soft one as counts, see above).
    """
    folder = Path(cache_dir) / record.patient_id
    key = cache_key(record, config, seed)
    if derived:  # only then, so that caches without derived targets stay valid
        key["derived"] = {"targets": list(derived), "reader_labels": list(reader_labels)}
    meta_path = folder / CACHE_META
    if meta_path.exists() and json.loads(meta_path.read_text()).get("key") == key:
        return load_cached(cache_dir, record.patient_id)
    started = time.perf_counter()
    patient = load_patient_on_ct(record, config.registration, seed)
    divisors = {}
    if derived:
        patient.labels.update(derived_targets(patient.labels, reader_labels, derived))
        divisors = {name: len(reader_labels) for name in derived if name in SOFT_TARGETS}
        for name, divisor in divisors.items():  # k/N stored as k, exactly
            patient.labels[name] = np.rint(patient.labels[name] * divisor).astype(np.uint8)
    body = body_mask(patient.channels["ct"])
    norm = normalise_channels(patient, config, body)
    channel_names = [c for c in ("ct", "pet", "mri") if c in norm]
    label_names = sorted(patient.labels)
    images = np.stack([resize_slices(norm[c], config.image_size, fit=config.fit) for c in channel_names],
                      axis=1).astype(np.float16)
    # a patient without labels (new patients to predict) caches an empty label axis
    labels = np.stack([resize_slices(patient.labels[k], config.image_size, is_mask=True, fit=config.fit)
                       for k in label_names], axis=1) if label_names else np.zeros((len(images), 0, *images.shape[2:]), np.uint8)
    ct = patient.ct_image
    meta = {
        "key": key, "patient_id": record.patient_id, "channels": channel_names, "labels": label_names,
        "fit": config.fit, "ct_geometry": ImageGeometry.of_image(ct).as_record(),
        "registration": patient.registration.as_dict(),
        "label_slices": {k: [int(i) for i in np.flatnonzero(patient.labels[k].any(axis=(1, 2)))] for k in label_names},
        "label_voxels": {k: int(np.count_nonzero(patient.labels[k])) for k in label_names},
        "label_divisors": divisors,
        "preprocess_seconds": time.perf_counter() - started,
    }
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / CACHE_SLICES, images)
    np.save(tmp / CACHE_SLICE_LABELS, labels)
    # native-grid labels and body mask for exact 3D evaluation on the CT grid
    np.savez_compressed(tmp / CACHE_NATIVE, body=body,
                        **{f"label__{k}": patient.labels[k].astype(bool) for k in label_names if k not in divisors})
    (tmp / CACHE_META).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return CachedPatient(record.patient_id, images, labels, channel_names, label_names, meta)


def load_native(cache_dir: str | os.PathLike, patient_id: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The CT-grid labels and body mask saved with a patient's cache."""
    with np.load(Path(cache_dir) / patient_id / CACHE_NATIVE) as data:
        labels = {k.removeprefix("label__"): data[k] for k in data.files if k.startswith("label__")}
        return labels, data["body"]


def load_cached(cache_dir: str | os.PathLike, patient_id: str) -> CachedPatient:
    """Open a patient's cached slices (memory-mapped)."""
    folder = Path(cache_dir) / patient_id
    meta = json.loads((folder / CACHE_META).read_text())
    return CachedPatient(patient_id, np.load(folder / CACHE_SLICES, mmap_mode="r"),
                         np.load(folder / CACHE_SLICE_LABELS, mmap_mode="r"), meta["channels"], meta["labels"], meta)


def select_training_slices(cached: CachedPatient, labels: list[str], background_fraction: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Slices holding any of ``labels`` (the paper drops the rest), plus a fraction of lesion-free slices.

    The choice does not depend on which label a model is trained on, so models A and B of one grid cell see a
    strictly identical input set X (paper, section 3).
    """
    index = [cached.label_names.index(label) for label in labels]
    has = np.asarray(cached.labels[:, index]).reshape(len(cached.labels), -1).any(axis=1)
    positive = np.flatnonzero(has)
    negative = np.flatnonzero(~has)
    n_bg = int(round(background_fraction * len(negative)))
    chosen = rng.choice(negative, size=n_bg, replace=False) if n_bg else np.array([], int)
    return np.sort(np.concatenate([positive, chosen]).astype(int))
