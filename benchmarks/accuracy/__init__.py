"""Accuracy benchmarks on the field's real data sets: one command per data set, a results file each."""
