"""The one cohort layout every study input uses (synthetic and real), and its reading/validation.

A cohort is described by a ``cohort.json`` (patient-centred, like nnU-Net's ``dataset.json``)::

    {
      "name": "synthetic-osteomyelitis",
      "root": ".",                       # folder the patient paths are relative to (relative to this file)
      "channels": {"ct": "CT in HU", "pet": "PET in SUV (body weight)"},
      "labels": {"label_a": "high sensitivity ...", "label_b": "high specificity ..."},
      "train_labels": ["label_a", "label_b"],   # labels models are trained on
      "patients": {
        "P000": {"ct": "P000/ct.nii.gz", "pet": "P000/pet.nii.gz",
                 "labels": {"label_a": "P000/label_a.nii.gz", ...}, "meta": "P000/meta.json"}
      }
    }

Images may be NIfTI files or DICOM series folders; labels may be NIfTI masks, an ROI of a DICOM RTSTRUCT
(``"rtstruct:ROI_NAME:path/RS.dcm"``) or a segment of a DICOM SEG (``"seg:SEGMENT_LABEL:path/seg.dcm"``). Patient identifiers are the dictionary keys (folder names),
never DICOM patient-identity tags.

The structure between the colons selects what is read from the RTSTRUCT or SEG (``dicom.select_structures``):

- ``seg:#3:path/seg.dcm`` - segment (or ROI) number 3;
- ``seg:GTV:path/seg.dcm`` - the one segment labelled ``GTV``; when several segments share that label this is an
  error listing their numbers (archives label every metastasis "Neoplasm, Secondary": nothing is picked silently);
- ``seg:Neoplasm, Secondary*:path/seg.dcm`` - every segment labelled ``Neoplasm, Secondary``, as one mask.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CohortError
from .modalities import CHANNELS

# Patient ids and label names become folder and file names (cache, runs, predictions): one path component from a
# portable character set, so that no identifier can point outside the results folder ('..', '/', absolute paths)
# or mean different files on case-folding or Windows file systems. '__' separates the parts of run and prediction
# names, so a label may not contain it.
COHORT_FILE = "cohort.json"
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_safe_identifier(value: object) -> bool:
    """True for one path component of ``[A-Za-z0-9._-]`` (``IDENTIFIER``) without ``..`` or ``__``."""
    return isinstance(value, str) and bool(IDENTIFIER.fullmatch(value)) and ".." not in value and "__" not in value


def check_identifier(value: object, what: str, where: str | os.PathLike) -> str:
    """``value`` if it is a safe identifier (``is_safe_identifier``), else a ``CohortError`` naming ``where``."""
    if not is_safe_identifier(value):
        raise CohortError(f"{where}: {what} {value!r} is not a safe identifier (1-128 characters of A-Z a-z 0-9 . _ -, "
                          "starting with a letter or digit, without '..' or '__'): identifiers become file names")
    return value


@dataclass
class PatientRecord:
    """Paths of one patient's images and labels (absolute)."""

    patient_id: str
    images: dict[str, Path]
    labels: dict[str, str]
    meta: Path | None = None

    def label_path(self, name: str) -> str:
        """The label source (a path, ``rtstruct:ROI:path`` or ``seg:SEGMENT_LABEL:path``) of label ``name``."""
        if name not in self.labels:
            raise CohortError(f"patient {self.patient_id}: no label '{name}' (has {sorted(self.labels)})")
        return self.labels[name]

    def read_meta(self) -> dict:
        """The patient's ``meta.json`` (synthetic cohorts), or an empty dict."""
        if self.meta is None or not self.meta.exists():
            return {}
        return json.loads(self.meta.read_text())


@dataclass
class Cohort:
    """A parsed ``cohort.json``."""

    path: Path
    name: str
    root: Path
    channels: dict[str, str]
    labels: dict[str, str]
    train_labels: list[str]
    patients: dict[str, PatientRecord] = field(default_factory=dict)
    description: str = ""
    synthetic: dict | None = None  # generator settings of a synthetic cohort (seed, scale, readers, assumptions)

    @property
    def patient_ids(self) -> list[str]:
        """Sorted patient identifiers."""
        return sorted(self.patients)

    def patient(self, patient_id: str) -> PatientRecord:
        """One patient's record, with a clear error for an unknown id."""
        if patient_id not in self.patients:
            raise CohortError(f"unknown patient '{patient_id}' in cohort {self.name}")
        return self.patients[patient_id]

    def has_channel(self, channel: str) -> bool:
        """True when every patient has this image channel."""
        return all(channel in p.images for p in self.patients.values())


LABEL_FORMS = ("rtstruct", "seg")  # label sources that name structures inside a DICOM object (#N, LABEL, LABEL*)


def split_label_source(entry: str) -> tuple[str | None, str | None, str]:
    """``(form, structure, path)`` of a label source: ``("rtstruct", ROI, path)``, ``("seg", SEGMENT, path)``
    or ``(None, None, path)`` for a mask file; the structure is a selector kept as written (``#N``, ``LABEL`` or
    ``LABEL*``, see the module docstring)."""
    form = entry.split(":", 1)[0]
    if form in LABEL_FORMS and entry.count(":") >= 2:
        _, structure, path = entry.split(":", 2)
        return form, structure, path
    return None, None, entry


def _resolve(root: Path, entry: str) -> str:
    form, structure, rel = split_label_source(entry)
    path = str((root / rel).resolve())
    return f"{form}:{structure}:{path}" if form else path


def _text(value: object, what: str, where: str | os.PathLike) -> str:
    """``value`` if it is a non-empty string (a path or label source), else a ``CohortError`` naming ``where``."""
    if not isinstance(value, str) or not value:
        raise CohortError(f"{where}: '{what}' must be a file path, got {value!r}")
    return value


def load_cohort(path: str | os.PathLike) -> Cohort:
    """Read and validate a ``cohort.json`` (or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / COHORT_FILE
    if not path.exists():
        raise CohortError(f"no cohort description at {path} (create one with `python -m studylib cohort init`)")
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise CohortError(f"{path}: duplicate patient ids / keys {dupes}")
        return dict(pairs)

    try:
        spec = json.loads(path.read_text(), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as err:
        raise CohortError(f"{path}: not valid JSON ({err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CohortError(f"{path}: cannot be read ({err})") from err
    if not isinstance(spec, dict):
        raise CohortError(f"{path}: a cohort description is a JSON object, got {type(spec).__name__}")
    for key in ("patients", "labels"):
        if key not in spec:
            raise CohortError(f"{path}: missing key '{key}'")
        if not isinstance(spec[key], dict):
            raise CohortError(f"{path}: '{key}' must map names to entries, got a {type(spec[key]).__name__}")
    for name in spec["labels"]:
        check_identifier(name, "label name", path)
    root = (path.parent / _text(spec.get("root", "."), "root", path)).resolve()
    patients: dict[str, PatientRecord] = {}
    for pid, entry in spec["patients"].items():
        check_identifier(pid, "patient id", path)
        where = f"{path}: patient {pid}"
        if not isinstance(entry, dict):
            raise CohortError(f"{where}: the entry must be an object with 'ct', 'pet' and 'labels', got {entry!r}")
        images = {m: Path(_resolve(root, _text(entry[m], m, where))) for m in CHANNELS if m in entry}
        if "ct" not in images or "pet" not in images:
            missing = [m for m in ("ct", "pet") if m not in images]
            raise CohortError(f"patient {pid}: missing modality {missing} in {path}")
        entry_labels = entry.get("labels", {})
        if not isinstance(entry_labels, dict):
            raise CohortError(f"{where}: 'labels' must map label names to files, got {entry_labels!r}")
        unknown_labels = sorted(set(entry_labels) - set(spec["labels"]))
        if unknown_labels:
            raise CohortError(f"{where}: labels {unknown_labels} are not declared in 'labels' ({sorted(spec['labels'])})")
        labels = {name: _resolve(root, _text(rel, f"label {name}", where)) for name, rel in entry_labels.items()}
        meta = Path(_resolve(root, _text(entry["meta"], "meta", where))) if "meta" in entry else None
        patients[pid] = PatientRecord(pid, images, labels, meta)
    train_labels = spec.get("train_labels") or list(spec["labels"])
    unknown = set(train_labels) - set(spec["labels"])
    if unknown:
        raise CohortError(f"{path}: train_labels {sorted(unknown)} are not declared in 'labels'")
    return Cohort(
        path=path,
        name=spec.get("name", path.parent.name),
        root=root,
        channels=spec.get("channels", {"ct": "CT", "pet": "PET"}),
        labels=spec["labels"],
        train_labels=list(train_labels),
        patients=patients,
        description=spec.get("description", ""),
        synthetic=spec.get("synthetic"),
    )


def write_cohort_json(path: Path, spec: dict) -> None:
    """Write a cohort description atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec, indent=2, sort_keys=False))
    os.replace(tmp, path)


def init_cohort(
    data_dir: str | os.PathLike,
    ct: str,
    pet: str,
    labels: dict[str, str],
    out: str | os.PathLike,
    mri: str | None = None,
    name: str | None = None,
    require_all_labels: bool = True,
    label_descriptions: dict[str, str] | None = None,
    disease: str | None = None,
    description: str | None = None,
) -> tuple[dict, list[str]]:
    """Map a folder of patient folders with arbitrary file names into a ``cohort.json`` (no copying).

    ``ct``/``pet``/``mri`` and the label values are file (or DICOM folder) names inside each patient folder.
    Patients lacking CT or PET are skipped and returned in the second element with the reason.
    """
    data_dir = Path(data_dir).resolve()
    out = Path(out).resolve()
    if not data_dir.is_dir():
        raise CohortError(f"{data_dir} is not a folder")
    patients, skipped = {}, []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if not is_safe_identifier(folder.name):
            skipped.append(f"{folder.name}: the folder name is not a safe patient id (A-Z a-z 0-9 . _ -, no '..' or '__')")
            continue
        entry: dict = {}
        missing = []
        for modality, fname in (("ct", ct), ("pet", pet), ("mri", mri)):
            if fname is None:
                continue
            if (folder / fname).exists():
                entry[modality] = str(Path(folder.name) / fname)
            else:
                missing.append(f"{modality} ({fname})")
        entry_labels = {}
        for lname, fname in labels.items():
            if (folder / fname).exists():
                entry_labels[lname] = str(Path(folder.name) / fname)
            elif require_all_labels:
                missing.append(f"label {lname} ({fname})")
        if missing:
            if any(m.startswith(("ct", "pet")) for m in missing) or require_all_labels:
                skipped.append(f"{folder.name}: missing {', '.join(missing)}")
                continue
        entry["labels"] = entry_labels
        patients[folder.name] = entry
    if not patients:
        raise CohortError(f"no patient folder in {data_dir} has both {ct} and {pet}")
    spec = {
        "name": name or data_dir.name,
        **({"disease": disease} if disease else {}),
        **({"description": description} if description else {}),
        "root": os.path.relpath(data_dir, out.parent),
        "channels": {"ct": "CT in HU", "pet": "PET (SUV or Bq/ml)", **({"mri": "MRI"} if mri else {})},
        "labels": {k: (label_descriptions or {}).get(k, f"mask from {v}") for k, v in labels.items()},
        "train_labels": list(labels),
        "patients": patients,
    }
    write_cohort_json(out, spec)
    return spec, skipped
