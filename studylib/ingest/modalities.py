"""The one vocabulary of inputs: image *channels* a cohort provides, and *modalities* a network is given.

A modality (a value of the study's ``modalities`` axis, the ``modality`` column of every table) is a stack of
channels: ``dual`` is CT and PET stacked, as in the paper.
"""

from __future__ import annotations

CHANNELS = ("ct", "pet", "mri")  # image channels of a cohort (cohort.json keys)

MODALITY_CHANNELS = {"ct": ["ct"], "pet": ["pet"], "dual": ["ct", "pet"], "dual_mri": ["ct", "pet", "mri"]}
MODALITY_NAMES = {"ct": "CT only", "pet": "PET only", "dual": "Dual (CT+PET)", "dual_mri": "CT+PET+MRI"}
MODALITY_ORDER = list(MODALITY_CHANNELS)  # table and figure order
