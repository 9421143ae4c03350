"""Per-structure measurements: volumes (mm³) and centroids (mm)."""
