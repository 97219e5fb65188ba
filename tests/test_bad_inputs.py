"""Bad inputs as a careless user gives them: nothing outside the results folder is touched, no stale cache hides,
every refusal is one line naming the file or patient. (DICOM and NIfTI readers: test_bad_inputs_dicom.py.)"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from studylib.cli import main
from studylib.ingest.cohort import CohortError, load_cohort

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "tiny_profile.yaml")


def cohort_file(quick_cohort: Path, path: Path, patients: dict | None = None, **changes) -> Path:
    """A cohort.json at ``path`` over the session's synthetic patients, with ``changes`` applied."""
    spec = json.loads((quick_cohort / "cohort.json").read_text())
    spec["root"] = str(quick_cohort)
    if patients is not None:
        spec["patients"] = patients
    spec.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


def one_error_line(capsys) -> str:
    """The command's stderr, checked to be one ``error:`` line without a traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("bad_id", ["../victim", "/tmp/victim-abs", "a/b", "..", "P 1", "x__y", ""])
def test_unsafe_patient_id_is_refused_before_anything_is_written(quick_cohort, tmp_path, capsys, bad_id):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    spec = json.loads((quick_cohort / "cohort.json").read_text())
    cohort = cohort_file(quick_cohort, tmp_path / "in" / "cohort.json", {bad_id: spec["patients"]["P000"],
                                                                         **spec["patients"]})
    results = tmp_path / "results"
    assert main(["study", "--profile", TINY, "--cohort", str(cohort), "--out", str(results)]) == 2
    err = one_error_line(capsys)
    assert str(cohort) in err and "patient id" in err
    assert (victim / "keep.txt").read_text() == "precious" and sorted(os.listdir(victim)) == ["keep.txt"]
    assert not results.exists()  # refused before anything is written


def test_unsafe_label_name_is_refused(quick_cohort, tmp_path):
    path = cohort_file(quick_cohort, tmp_path / "c.json", labels={"../label": "x"})
    with pytest.raises(CohortError, match="label name"):
        load_cohort(path)


@pytest.mark.parametrize("change, message", [
    ({"patients": ["P000", "P001"]}, "'patients' must map"),
    ({"patients": {"P000": {"ct": None, "pet": "P000/pet.nii.gz"}}}, "'ct' must be a file path"),
    ({"patients": {"P000": "P000"}}, "must be an object"),
    ({"patients": {"P000": {"ct": "P000/ct.nii.gz", "pet": "P000/pet.nii.gz", "labels": {"nope": "P000/x.nii.gz"}}}},
     "not declared"),
])
def test_malformed_cohort_is_one_line_naming_the_file(quick_cohort, tmp_path, capsys, change, message):
    path = cohort_file(quick_cohort, tmp_path / "c.json", **change)
    assert main(["prepare", "--profile", TINY, "--cohort", str(path), "--out", str(tmp_path / "r")]) == 2
    err = one_error_line(capsys)
    assert message in err and str(path) in err


def test_cohort_init_skips_unsafe_folder_names(tmp_path):
    from studylib.ingest.cohort import init_cohort

    for name in ("ok_1", "bad name", "x__y"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for f in ("ct.nii.gz", "pet.nii.gz"):
            (tmp_path / "data" / name / f).write_bytes(b"")
    spec, skipped = init_cohort(tmp_path / "data", "ct.nii.gz", "pet.nii.gz", {}, tmp_path / "c.json")
    assert list(spec["patients"]) == ["ok_1"]
    assert len(skipped) == 2 and all("safe patient id" in s for s in skipped)


def test_cache_follows_the_label_source_not_only_the_file(quick_cohort, tmp_path, monkeypatch):
    """Switching a label to another structure of the same file (an RTSTRUCT ROI, a SEG segment) rebuilds the cache."""
    from studylib.ingest.cohort import PatientRecord
    from studylib.plans.profiles import load_profile
    from studylib.preprocessing import cache

    calls = []
    real = cache.load_patient_on_ct

    def counting(record, *args, **kwargs):
        calls.append(dict(record.labels))
        return real(PatientRecord(record.patient_id, record.images, {"label_a": str(quick_cohort / "P000" / "label_a.nii.gz")}),
                    *args, **kwargs)

    monkeypatch.setattr(cache, "load_patient_on_ct", counting)
    preprocess = load_profile(TINY).preprocess
    images = {m: quick_cohort / "P000" / f"{m}.nii.gz" for m in ("ct", "pet")}
    dicom = str(quick_cohort / "P000" / "label_a.nii.gz")  # the same bytes under two structure names
    for roi in ("GTV", "GTV", "PTV", "GTV_misspelt"):
        cache.cache_patient(PatientRecord("P000", images, {"label_a": f"rtstruct:{roi}:{dicom}"}), preprocess, tmp_path)
    assert [c["label_a"].split(":")[1] for c in calls] == ["GTV", "PTV", "GTV_misspelt"]  # the repeat was a cache hit
    key = json.loads((tmp_path / "P000" / "meta.json").read_text())["key"]
    assert key["labels"] == {"label_a": ["rtstruct", "GTV_misspelt"]} and key["version"] == cache.CACHE_VERSION


def test_synth_overwrite_deletes_only_a_cohort_it_wrote(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["synth", "--out", str(mine), "--patients", "1", "--scale", "quick", "--overwrite"]) == 2
    assert "not written by `synth`" in one_error_line(capsys)
    assert (mine / "thesis.tex").read_text() == "years of work"

    cohort = tmp_path / "cohort"
    assert main(["synth", "--out", str(cohort), "--patients", "1", "--scale", "quick", "--jobs", "1"]) == 0
    first = (cohort / "P000" / "ct.nii.gz").stat().st_mtime_ns
    assert main(["synth", "--out", str(cohort), "--patients", "1", "--scale", "quick", "--jobs", "1",
                 "--overwrite"]) == 0
    assert (cohort / "P000" / "ct.nii.gz").stat().st_mtime_ns != first
    assert not list(tmp_path.glob(".*partial*"))  # generated beside, renamed into place


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    from studylib.plans.results_lock import LOCK_NAME, ResultsLockedError, results_lock

    results = tmp_path / "results"
    results.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": holder.pid, "host": socket.gethostname(), "command": "python -m studylib study", "started": "t"}
        (results / LOCK_NAME).write_text(json.dumps(record))
        assert main(["run", "--results", str(results)]) == 2
        err = one_error_line(capsys)
        assert f"pid {holder.pid}" in err and LOCK_NAME in err
        with pytest.raises(ResultsLockedError):
            with results_lock(results):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over and said
    with results_lock(results) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with results_lock(results):  # re-entrant: a study holds it over its stages
            pass
        assert path.exists()
    assert "stale lock" in capsys.readouterr().err and not (results / LOCK_NAME).exists()


def test_unwritable_results_folder_is_one_line(tmp_path, capsys, monkeypatch):
    """Read-only storage (simulated: tests run as root, for whom permission bits do not stop a write)."""
    from studylib.plans import results_lock

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(results_lock, "_create", read_only)
    (tmp_path / "plan.json").write_text("{}")
    assert main(["aggregate", "--results", str(tmp_path)]) == 2
    err = one_error_line(capsys)
    assert "cannot be written" in err and str(tmp_path) in err


def test_full_disk_leaves_no_stray_checkpoint(tmp_path, monkeypatch):
    import torch

    from studylib.training.trainer import save_checkpoint

    save_checkpoint({"model": {}}, tmp_path / "last.pt")
    good = (tmp_path / "last.pt").read_bytes()

    def full(state, path):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        save_checkpoint({"model": {"w": 1}}, tmp_path / "last.pt")
    assert sorted(os.listdir(tmp_path)) == ["last.pt"] and (tmp_path / "last.pt").read_bytes() == good


def test_too_few_patients_for_the_folds_says_why():
    from studylib.plans.splits import SplitError, make_splits

    with pytest.raises(SplitError, match=r"3 patients in 2 folds leave 1 patient.*training and 3 validation"):
        make_splits(["P1", "P2", "P3"], folds=2)
    with pytest.raises(SplitError, match=r"at least one training and 1 validation"):
        make_splits(["P1", "P2", "P3"], folds=2, val_patients=1)
    assert len(make_splits(["P1", "P2", "P3"], folds=3, val_patients=1)) == 3


def test_model_selection_rests_on_three_validation_patients_and_nnunet_never_validates_on_our_test(tmp_path):
    """Every fold validates on the profile's number of patients (3 by default); nnU-Net's splits_final.json gets
    our train as its train and our validation as its val, so its selection never sees a test patient; a results
    folder split with another number of validation patients is refused, not reused."""
    from studylib.plans.splits import SplitError, load_or_make_splits

    ids = [f"P{i:03d}" for i in range(20)]
    splits = load_or_make_splits(tmp_path, ids, folds=2, seed=0)
    assert [len(f["val"]) for f in splits] == [3, 3] and [len(f["test"]) for f in splits] == [10, 10]
    nnunet = json.loads((tmp_path / "splits_final.json").read_text())
    for ours, theirs in zip(splits, nnunet):
        assert theirs == {"train": ours["train"], "val": ours["val"]}
        assert not set(theirs["train"] + theirs["val"]) & set(ours["test"])
    with pytest.raises(SplitError, match=r"\[3\] validation patient\(s\) per fold but the profile asks for 1"):
        load_or_make_splits(tmp_path, ids, folds=2, seed=0, val_patients=1)


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_nnunet_splits_validate_on_our_validation_patients_in_every_fold(tmp_path, folds):
    """The split check: in every fold nnU-Net's val is our validation set and no test patient is in its train or
    val; a splits_final.json written before (val = our test patients) is rewritten when the splits are reused, and
    check_nnunet_splits refuses such a file."""
    from studylib.plans.splits import SplitError, check_nnunet_splits, load_or_make_splits

    ids = [f"P{i:03d}" for i in range(20)]
    splits = load_or_make_splits(tmp_path, ids, folds=folds, seed=3)
    final = tmp_path / "splits_final.json"
    stale = [{"train": f["train"] + f["val"], "val": f["test"]} for f in splits]  # what splits.py once wrote
    with pytest.raises(SplitError, match=r"fold 0: test patients \['P"):
        check_nnunet_splits(stale, splits)
    final.write_text(json.dumps(stale))
    assert load_or_make_splits(tmp_path, ids, folds=folds, seed=3) == splits
    nnunet = json.loads(final.read_text())
    check_nnunet_splits(nnunet, splits)
    assert len(nnunet) == folds
    for ours, theirs in zip(splits, nnunet):
        assert theirs["val"] == ours["val"] and theirs["train"] == ours["train"]
        assert not set(ours["test"]) & set(theirs["train"] + theirs["val"])


def test_registration_failure_names_the_patient(quick_cohort, tmp_path):
    import SimpleITK as sitk

    from studylib.preprocessing.patient_on_ct import load_patient_on_ct
    from studylib.preprocessing.registration import RegistrationError

    pet = sitk.ReadImage(str(quick_cohort / "P001" / "pet.nii.gz"))
    pet.SetOrigin(tuple(o + 5000.0 for o in pet.GetOrigin()))  # 5 m away: no overlap with the CT
    sitk.WriteImage(pet, str(tmp_path / "pet.nii.gz"))
    spec = json.loads((quick_cohort / "cohort.json").read_text())["patients"]["P001"]
    entry = {**spec, "pet": str(tmp_path / "pet.nii.gz"), "ct": str(quick_cohort / spec["ct"]), "labels": {}}
    entry.pop("meta")
    cohort = load_cohort(cohort_file(quick_cohort, tmp_path / "c.json", {"P001": entry}))
    with pytest.raises(RegistrationError, match=r"patient P001: PET .*pet.nii.gz onto CT .*no physical overlap"):
        load_patient_on_ct(cohort.patient("P001"), "rigid")


def test_cli_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "studylib", "--debug", "aggregate", "--results", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "studylib", "aggregate", "--results", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_a_synthetic_cohort_from_another_generator_version_or_profile_is_refused(tmp_path):
    """A results folder keeps its generated cohort; one made by an older generator (or for another profile) would
    be studied as if this code had made it, so it is refused with the file and the differing settings named."""
    from studylib.pipeline.study import ensure_cohort
    from studylib.plans.profiles import load_profile
    from studylib.synthetic.generate import GENERATOR_VERSION

    profile = load_profile(Path(__file__).parent / "tiny_profile.yaml")
    cohort_json = tmp_path / "cohort" / "cohort.json"
    cohort_json.parent.mkdir()
    made = {"generator_version": GENERATOR_VERSION, "seed": profile.cohort.seed, "patients": profile.cohort.patients,
            "scale": profile.cohort.scale, "reader_count": profile.cohort.reader_count}
    cohort_json.write_text(json.dumps({"synthetic": made}))
    assert ensure_cohort(profile, None, tmp_path) == cohort_json.parent
    cohort_json.write_text(json.dumps({"synthetic": {**made, "generator_version": GENERATOR_VERSION - 1}}))
    with pytest.raises(ValueError, match=rf"cohort.json was generated with generator_version {GENERATOR_VERSION - 1}"):
        ensure_cohort(profile, None, tmp_path)
    cohort_json.write_text(json.dumps({"synthetic": {**made, "seed": 7}}))
    with pytest.raises(ValueError, match=r"seed 7 \(the profile and this code: 0\).*new --out"):
        ensure_cohort(profile, None, tmp_path)
    # a cohort written before the count was named reader_count records it as "readers": the same cohort
    old = {k: v for k, v in made.items() if k != "reader_count"}
    cohort_json.write_text(json.dumps({"synthetic": {**old, "readers": profile.cohort.reader_count}}))
    assert ensure_cohort(profile, None, tmp_path) == cohort_json.parent
    cohort_json.write_text(json.dumps({"synthetic": {**old, "readers": 3}}))
    with pytest.raises(ValueError, match=r"reader_count 3 \(the profile and this code: 2\)"):
        ensure_cohort(profile, None, tmp_path)


def test_a_profile_key_renamed_is_refused_with_its_new_name(tmp_path):
    """`readers` had three meanings; a profile (or an old results folder's profile.yaml) still using it is told the
    new key and the file, never read under a guessed meaning."""
    from studylib.plans.profiles import load_profile

    path = tmp_path / "old.yaml"
    (tmp_path / "tiny_profile.yaml").write_text((Path(__file__).parent / "tiny_profile.yaml").read_text())  # its base
    path.write_text((Path(__file__).parent / "tiny_multirater.yaml").read_text()
                    .replace("reader_count: 3", "readers: 3").replace("reader_labels:", "readers:"))
    with pytest.raises(ValueError, match=r"old.yaml: cohort.readers is now cohort.reader_count; "
                                         r"study.readers is now study.reader_labels \(rename the keys in this file\)"):
        load_profile(path)
