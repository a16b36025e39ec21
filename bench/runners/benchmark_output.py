"""What TFLite's native `benchmark_model` prints, read into one typed result.

The tool has changed its wording many times since TF 1.12 (LiteRT added percentiles, builds
log through `INFO: ` prefixes or Android's logcat, C++ streams print large averages in
scientific notation), and it never fails loudly when a flag or delegate does nothing. So this
module reads every known shape, keeps the warm-up apart from the timed loop, keeps the
delegation evidence (what was created, applied, failed, ignored), and refuses output without a
timed-loop number instead of reporting zeros.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Stat lines hold whole microseconds (the tool times int64 µs), so a median under this is
# rounded by more than 1%; the average (6 significant digits) is then the better summary.
COARSE_MEDIAN_US = 100.0

_NUM = r"[-+]?(?:nan|inf(?:inity)?|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"

# adb logcat threadtime ("11-27 10:00:00.123  1234  1234 I tflite  : "), time ("... I/tflite
# ( 1234): "), brief ("I/tflite  ( 1234): "), tag only ("I tflite  : "), docs' "... tflite  : ".
_LOGCAT = re.compile(
    r"^(?:\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+(?:\d+\s+\d+\s+)?|\.\.\.\s+)?"
    r"(?:(?P<level>[VDIWEFA])[ /])?tflite\s*(?:\(\s*\d+\s*\))?\s*:\s?"
)
_SEVERITY = re.compile(r"^(?P<sev>INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG|FATAL):\s?")
_ERROR_LEVELS = {"E", "F", "ERROR", "FATAL"}

_STARTING = re.compile(r"^STARTING!$")
_MARKER = re.compile(r"^Running benchmark for (?:at least )?(\d+) iterations")
_STAT = re.compile(r"^count=\d+")
_STAT_FIELD = re.compile(r"(\w+)=(\S+)")
_TIMINGS = re.compile(r"^(?:Average )?inference timings in us:\s*(?P<rest>.*)$", re.IGNORECASE)
_TIMING_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup": "warmup_avg_us",
    "warmup (avg)": "warmup_avg_us",
    "inference": "inference_avg_us",
    "inference (avg)": "inference_avg_us",
    "no stats": "inference_avg_us",  # TF 1.x named the timed loop's stat this way
}
_FOOTPRINT = re.compile(
    rf"^Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})"
)
# TF <= 2.4 printed the process's max RSS under this name (not a delta from the start).
_PEAK_PAIR = re.compile(rf"^Peak memory footprint \(MB\): init=({_NUM}) overall=({_NUM})")
_PEAK_ONE = re.compile(rf"^Peak memory footprint \(MB\): ({_NUM})\s*$")
_PEAK_MONITOR = re.compile(
    rf"^Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})"
)
_MODEL_SIZE = re.compile(rf"^The input model file size \(MB\): ({_NUM})")

_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]+)\)")
_REPLACING_OLD = re.compile(r"Replacing (\d+) node\(s\) with delegate \(([^)]+)\)")
_DELEGATED = re.compile(r"(\w+)(?: delegate)?:\s*(\d+) nodes delegated out of (\d+) nodes")
_CREATED = re.compile(r"Created TensorFlow Lite (?:(\w+) )?delegate for (\w+)")
_CREATED_SHORT = re.compile(r"^(\w+) delegate created\b")
_APPLIED = re.compile(r"^(?:Explicitly applied|Applied) (\w+) delegate")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags:\s*(?P<args>.*)$")
_FAILURE = re.compile(
    r"Could not create \w+ delegate"
    r"|Failed to (?:apply|create|fetch|initialize|load lib|load delegate)"
    r"|Incompatible versions between interface library"
    r"|Delegate is not supported"
    r"|acceleration is unsupported on this platform"
    r"|will not be executed by the delegate"
    r"|Unable to load external delegate"
    r"|Couldn't load NNAPI support library"
    r"|Restored original execution plan after delegate application failure"
    r"|\(\w*Delegate\w*\) failed to (?:prepare|invoke)"
    r"|NN API returned error"
    r"|Disallowed CPU fallback detected"
)


@dataclass(frozen=True)
class Stats:
    """One `count=… first=… curr=…` line; None where the line does not say (never 0).

    The tool prints only `count=N curr=X` (plus "(all same)" when N > 1) when every run took
    X, so that form fills every order statistic with X, and std with 0 when N > 1.
    """

    count: int | None = None
    avg_us: float | None = None
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None
    first_us: float | None = None
    curr_us: float | None = None

    @property
    def empty(self) -> bool:
        """No runs behind it (absent, or `count=0` as a dry run prints)."""
        return not self.count


@dataclass(frozen=True)
class Delegation:
    """A delegate's own account of how much of the graph it took."""

    delegate: str  # as printed: "TfLiteXNNPackDelegate", "Hexagon", "EthosuDelegate", …
    delegated_nodes: int
    total_nodes: int | None  # None for the old "Replacing N node(s)" wording
    line: str


@dataclass(frozen=True)
class Summary:
    """The one number a round reports, and which statistic it is ("median" or "avg")."""

    value_us: float
    kind: str


@dataclass(frozen=True)
class BenchmarkOutput:
    """Everything one benchmark_model run printed that a round can use or must explain."""

    inference: Stats  # the timed loop
    warmup: Stats
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None  # from the "Inference timings in us" line
    inference_avg_us: float | None = None  # likewise ("Inference (avg)", old "Inference")
    model_size_mb: float | None = None
    init_footprint_mb: float | None = None  # "Memory footprint delta …: init="
    overall_footprint_mb: float | None = None  # "… overall="
    peak_memory_init_mb: float | None = None  # old builds: "Peak memory footprint (MB): init="
    peak_memory_mb: float | None = None  # old builds: "… overall=" (max RSS)
    overall_peak_memory_mb: float | None = None  # --report_peak_memory_footprint
    delegated_nodes: int | None = None  # from the first delegation line that gives both
    total_nodes: int | None = None
    delegations: tuple[Delegation, ...] = ()
    delegate_created: tuple[str, ...] = ()  # "XNNPACK", "Hexagon", "GPU", "NNAPI", …
    delegates_applied: tuple[str, ...] = ()  # "Explicitly applied X delegate"
    delegate_failures: tuple[str, ...] = ()  # verbatim messages (log prefixes removed)
    unconsumed_flags: tuple[str, ...] = ()  # names the build ignored, e.g. "use_hexagon"
    errors: tuple[str, ...] = ()  # ERROR-level messages
    lines_read: tuple[str, ...] = field(default=(), repr=False)  # every line a value came from

    @property
    def summary(self) -> Summary | None:
        """The median where printed, else the average; which one it was is `kind`.

        A median under COARSE_MEDIAN_US is whole microseconds rounded by over 1% (a 3 µs model
        reads 3), so there the average, printed to 6 significant digits, is used instead.
        """
        median = self.inference.median_us
        avg = self.inference.avg_us
        if avg is None:
            avg = self.inference_avg_us
        if median is not None and (avg is None or median >= COARSE_MEDIAN_US):
            return Summary(median, "median")
        if avg is not None:
            return Summary(avg, "avg")
        return None


class OutputError(ValueError):
    """Output with no timed-loop number; `partial` holds what was read (e.g. why it failed)."""

    def __init__(self, message: str, partial: BenchmarkOutput | None = None):
        super().__init__(message)
        self.partial = partial


def parse_output(text: str) -> BenchmarkOutput:
    """Read one run's stdout+stderr (or its logcat lines); OutputError if it has no result."""
    scan = _Scan()
    for raw in text.splitlines():
        scan.feed(raw)
    out = scan.result()
    summary = out.summary
    if summary is None or summary.value_us <= 0:
        reason = ("benchmark_model output has no timed-loop statistics and no "
                  "'Inference (avg)' timing" if summary is None else
                  f"benchmark_model's timed loop reads {summary.value_us:g} us, below its "
                  "1 us resolution")
        raise OutputError(f"{reason}; {_quote(text)}", out)
    return out


def _quote(text: str, limit: int = 140) -> str:
    """The start and end of the text, for an error a person can act on."""
    body = text.strip()
    if not body:
        return "the output is empty"
    if len(body) <= 2 * limit:
        return f"the output reads {body!r}"
    return f"the output ({len(body)} chars) starts {body[:limit]!r} and ends {body[-limit:]!r}"


def _num(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clean(raw: str) -> tuple[str, str | None]:
    """The message without logcat or severity prefixes, and its level if one was given."""
    line = raw.strip()
    level = None
    match = _LOGCAT.match(line)
    if match and match.end() > 0:
        level = match.group("level")
        line = line[match.end():]
    match = _SEVERITY.match(line)
    if match:
        level = match.group("sev")
        line = line[match.end():]
    return line.strip(), level


_STAT_KEYS = {"first": "first_us", "curr": "curr_us", "min": "min_us", "max": "max_us",
              "avg": "avg_us", "std": "std_us", "p5": "p5_us", "median": "median_us",
              "p95": "p95_us"}


def _stats(line: str) -> Stats:
    """A stat line, including `count=N curr=X(all same)` where every value is X."""
    fields = dict(_STAT_FIELD.findall(line.replace("(all same)", "")))
    count = int(float(fields.pop("count")))
    if count == 0:
        return Stats(count=0)
    values = {_STAT_KEYS[k]: _num(v) for k, v in fields.items() if k in _STAT_KEYS}
    if "min_us" not in values:  # the tool prints only curr when min == max
        same = values.get("curr_us")
        for name in ("first_us", "min_us", "max_us", "avg_us", "median_us", "p5_us", "p95_us"):
            values.setdefault(name, same)
        values.setdefault("std_us", 0.0 if count > 1 and same is not None else None)
    return Stats(count=count, **values)


def _agrees(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=0.5)


class _Scan:
    """Line-by-line state; a new "STARTING!" (logcat history) starts over."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.values: dict[str, float | None] = {}
        self.warmup: Stats | None = None
        self.inference: Stats | None = None
        self.unmarked: list[Stats] = []
        self.markers = 0
        self.delegations: list[Delegation] = []
        self.created: list[str] = []
        self.applied: list[str] = []
        self.failures: list[str] = []
        self.unconsumed: list[str] = []
        self.errors: list[str] = []
        self.lines: list[str] = []

    def feed(self, raw: str) -> None:
        line, level = _clean(raw)
        if not line:
            return
        if _STARTING.match(line):
            self._reset()
            return
        if level in _ERROR_LEVELS:
            self.errors.append(line)
        read = self._timing(line) or self._memory(line) or self._delegates(line)
        if read:
            self.lines.append(line)

    def _timing(self, line: str) -> bool:
        if _MARKER.match(line):
            self.markers += 1
            return True
        if _STAT.match(line):
            stats = _stats(line)
            if self.markers == 0:
                self.unmarked.append(stats)
            elif self.markers % 2:
                self.warmup = stats
            else:
                self.inference = stats
            return True
        match = _TIMINGS.match(line)
        if match:
            for part in match.group("rest").split(","):
                key, _, value = part.partition(":")
                name = _TIMING_KEYS.get(key.strip().lower())
                if name:
                    self.values[name] = _num(value.strip())
            return True
        return False

    def _memory(self, line: str) -> bool:
        for pattern, names in ((_FOOTPRINT, ("init_footprint_mb", "overall_footprint_mb")),
                               (_PEAK_PAIR, ("peak_memory_init_mb", "peak_memory_mb")),
                               (_PEAK_ONE, ("peak_memory_mb",)),
                               (_PEAK_MONITOR, ("overall_peak_memory_mb",)),
                               (_MODEL_SIZE, ("model_size_mb",))):
            match = pattern.match(line)
            if match:
                for name, group in zip(names, match.groups(), strict=True):
                    self.values[name] = _num(group)
                return True
        return False

    def _delegates(self, line: str) -> bool:
        read = False
        match = _REPLACING.search(line)
        if match:
            self.delegations.append(
                Delegation(match.group(3), int(match.group(1)), int(match.group(2)), line))
            read = True
        elif (match := _REPLACING_OLD.search(line)):
            self.delegations.append(Delegation(match.group(2), int(match.group(1)), None, line))
            read = True
        elif (match := _DELEGATED.search(line)):
            self.delegations.append(
                Delegation(match.group(1), int(match.group(2)), int(match.group(3)), line))
            read = True
        if (match := _CREATED.search(line)):
            self._add(self.created, match.group(1) or match.group(2))
            read = True
        elif (match := _CREATED_SHORT.match(line)):
            self._add(self.created, match.group(1))
            read = True
        if (match := _APPLIED.match(line)):
            self._add(self.applied, match.group(1))
            read = True
        if _FAILURE.search(line):
            self.failures.append(line)
            read = True
        if (match := _UNCONSUMED.search(line)):
            for arg in match.group("args").split():
                self._add(self.unconsumed, arg.lstrip("-").split("=", 1)[0])
            read = True
        return read

    @staticmethod
    def _add(names: list[str], name: str) -> None:
        if name not in names:
            names.append(name)

    def _resolve_unmarked(self) -> None:
        """Stat lines from trimmed logs without "Running benchmark" lines: place them."""
        if not self.unmarked or self.markers:
            return
        if len(self.unmarked) >= 2:
            self.warmup, self.inference = self.unmarked[0], self.unmarked[-1]
            return
        only = self.unmarked[0]
        warmup_avg, inference_avg = (self.values.get("warmup_avg_us"),
                                     self.values.get("inference_avg_us"))
        if _agrees(only.avg_us, warmup_avg) and not _agrees(only.avg_us, inference_avg):
            self.warmup = only
        else:
            self.inference = only

    def result(self) -> BenchmarkOutput:
        self._resolve_unmarked()
        warmup = self.warmup or Stats()
        inference = self.inference or Stats()
        values = dict(self.values)
        # An empty loop prints avg 0 (int64 NaN); that is no measurement.
        if inference.count == 0:
            values["inference_avg_us"] = None
        if warmup.count == 0:
            values["warmup_avg_us"] = None
            values["first_inference_us"] = None
        whole = next((d for d in self.delegations if d.total_nodes is not None), None)
        return BenchmarkOutput(
            inference=inference,
            warmup=warmup,
            delegated_nodes=whole.delegated_nodes if whole else None,
            total_nodes=whole.total_nodes if whole else None,
            delegations=tuple(self.delegations),
            delegate_created=tuple(self.created),
            delegates_applied=tuple(self.applied),
            delegate_failures=tuple(self.failures),
            unconsumed_flags=tuple(self.unconsumed),
            errors=tuple(self.errors),
            lines_read=tuple(self.lines),
            **values,
        )
