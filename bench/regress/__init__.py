"""Nightly regression decisions: is tonight's run of a benchmark slower than its baseline?

Pure statistics on round medians (no store, no CLI): `decision` judges one benchmark and a
night's family of them; `variance` estimates the within-run and run-to-run spread they need.
`benchmarks/gate_simulation.py` measures the error rates of the rule on this machine's noise.
"""
