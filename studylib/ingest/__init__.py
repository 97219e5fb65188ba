"""Read a cohort (cohort.json) and its images and labels (NIfTI, DICOM series, RTSTRUCT, SEG)."""
