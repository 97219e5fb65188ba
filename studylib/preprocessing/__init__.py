"""Each patient onto its CT grid (registration, intensities, derived targets) into the slice cache."""
