"""Benchmarks of ``fpar bench``: data loading, training step, scaling and accuracy."""
