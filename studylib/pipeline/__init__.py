"""The stages end to end: the study (prepare, run, aggregate), one run, predict, rerun, executors."""
