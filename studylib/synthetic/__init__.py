"""Deterministic synthetic PET-CT osteomyelitis cohort (the embedded default input), stage by stage.

``anatomy`` (healthy limbs and bones) -> ``lesions`` (foci, CT signs, implants, confounders) -> ``phantom``
(the patient as an analytic object in mm) -> ``scanners`` (CT, PET, MRI physics on their own grids) ->
``readers`` (simulated readers of two styles who contour what the images show) -> ``generate`` (patients
and cohort folders). Every number taken from the literature is in ``literature`` with its source; the
cohort's stated assumptions are generated from it. Nothing here encodes an expected segmentation score or
agreement.
"""

from .generate import (
                       LABEL_DESCRIPTIONS,
                       PatientVolumes,
                       generate_cohort,
                       generate_patient,
                       patient_anatomy,
                       read_all,
)
from .literature import DEVELOPMENT_SEED, assumptions
from .readers import STYLES, reader_names
from .scanners import SCALES

__all__ = ["DEVELOPMENT_SEED", "LABEL_DESCRIPTIONS", "SCALES", "STYLES", "PatientVolumes", "assumptions",
           "generate_cohort", "generate_patient", "patient_anatomy", "read_all", "reader_names"]
