"""Several readers: where readers and models disagree, the multi-rater field's metrics, truth-anchored answers,
calibration against reader agreement, one conditioned network against one network per reader."""
