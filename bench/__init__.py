"""Benchmarks: product path vs a hand-written baseline, measured in the same run (`make bench`)."""
