"""Accuracy next to latency: trained variants evaluated on labelled and held-out inputs.

`staging` turns a dataset into the batches a device evaluates (uint8 pixels where that is
exact); `evaluator` runs them through every trained variant on each device, apart from the
timed rounds, and turns the outputs into stored facts (`bench.store` table `evaluations`).
The figures (intervals, paired comparisons) come from `bench.analysis`.
"""
