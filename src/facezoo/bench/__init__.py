"""Measurements (`facezoo bench ...`); figures go to benchmarks/RESULTS.md with command, device and date."""
