"""The errors of reading a cohort: each message names the patient and the file."""


class CohortError(ValueError):
    """A cohort description or one of its files is invalid; the message names patient and file."""


class ImageReadError(ValueError):
    """An image could not be read or holds invalid values; the message names patient and file."""
