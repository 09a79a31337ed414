"""Lab tools of the benchmark: process isolation and malloc tuning, the mixing check, plots."""
