"""What a study runs and where: profiles, the run grid and run identity, splits, provenance."""
