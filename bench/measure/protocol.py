"""The measurement protocol: how long to warm up, how long to time, how many rounds.

The defaults follow TFLite's benchmark_model (warm-up: 1 run and 0.5 s; timed loop:
at least 50 runs and 1 s, at most 150 s). A round is one fresh runner process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Protocol:
    warmup_runs: int = 1
    warmup_min_s: float = 0.5
    min_runs: int = 50
    min_s: float = 1.0
    max_s: float = 150.0
    rounds: int = 1
    input_seed: int = 0

    @classmethod
    def quick(cls) -> Protocol:
        """For smoke tests: a few runs, figures too short to trust."""
        return cls(warmup_runs=1, warmup_min_s=0.0, min_runs=5, min_s=0.05, max_s=5.0)

    def to_dict(self) -> dict:
        return asdict(self)
