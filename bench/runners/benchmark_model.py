"""TFLite's native benchmark_model as a runner: no Python on the device.

The device file names the binary (the prebuilt `android_aarch64_benchmark_model`, one the
user built, or a Linux build for a board or this machine). The harness stages it by hash,
makes it executable, checks it is for the device's architecture, and reads its `--help`
once: a build ignores flags it does not know ("Unconsumed cmdline flags") and goes on, so
a `--use_hexagon` on a build without Hexagon would measure the CPU. A backend whose flag
the build lacks is refused before anything runs.

One invocation per round, pinned with `taskset` to the big cores (the CPUs with the
highest `cpuinfo_max_freq`, or the device file's `cpu_mask`), with every flag explicit
(num_threads, use_xnnpack, num_runs, warmup_runs, warmup_min_secs, min_secs, max_secs):
defaults differ between builds. The round's record holds the binary's statistics; there
are no per-iteration latencies (None, never invented), and its value is the median where
the binary prints one, else the average (the record says which). Peak memory is not
measured in timed rounds: `--report_peak_memory_footprint` polls from a thread that
disturbs timing.

Delegate backends use `--use_xnnpack=false`, so what the delegate leaves runs on the
built-in kernels and a partial delegation shows as such. What the delegate took comes
from the output ("N nodes delegated out of M", delegate creation and failure lines);
a delegate that took nothing or failed makes the cell a fallback, with the line that
proves it. The Hexagon delegate is deprecated by TFLite (Qualcomm's QNN delegate,
its successor, goes through `external`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

from bench.devices import BenchmarkModelSettings
from bench.results import Aggregate, Delegation, RoundEnvironment, RoundResult
from bench.runners.base import Invocation, RoundJob, RunnerProbe, RunnerUnavailable, Stager
from bench.runners.benchmark_output import BenchmarkOutput, OutputError, parse_output
from bench.transports.base import CommandResult, Transport, TransportError

__all__ = ["BenchmarkModelRunner", "parse_output"]

BACKEND_FLAGS = {"gpu": "use_gpu", "nnapi": "use_nnapi", "hexagon": "use_hexagon",
                 "external": "external_delegate_path", "xnnpack": "use_xnnpack"}
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64"}
ABI_MACHINES = {"arm64-v8a": "aarch64", "armeabi-v7a": "arm", "armeabi": "arm", "x86": "x86",
                "x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "arm", "armv8l": "arm"}
HEXAGON_LIBS = re.compile(r"^lib(hexagon_interface|hexagon_nn_skel.*)\.so$")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def elf_machine(path: Path) -> str | None:
    """The architecture a binary was built for, from its ELF header (None: not ELF)."""
    try:
        head = path.read_bytes()[:20]
    except OSError:
        return None
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    order = "little" if head[5] == 1 else "big"
    return ELF_MACHINES.get(int.from_bytes(head[18:20], order), f"machine {head[18]}")


def help_flags(text: str) -> set[str]:
    """Flag names a build lists in its --help (`--name=` or `\t--name`)."""
    return set(re.findall(r"--([a-z][a-z0-9_]*)", text))


class BenchmarkModelRunner:
    name = "benchmark_model"
    backends = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "external")

    def __init__(self, settings: BenchmarkModelSettings, device_file: str = "the device file"):
        self.settings = settings
        self.device_file = device_file
        self.binary = Path(os.path.expanduser(settings.binary))
        self.remote_binary: str | None = None
        self.hexagon_dir: str | None = None
        self.hexagon_problem: str | None = None
        self.external: str | None = None
        self.flags: set[str] = set()
        self.pin: list[str] = []
        self.digest: str | None = None

    # staging and probing
    def stage(self, stager: Stager) -> None:
        if not self.binary.is_file():
            raise RunnerUnavailable(f"benchmark_model binary not found: {self.binary}; "
                                    f"download or build it, and set benchmark_model.binary in "
                                    f"{self.device_file}", "binary")
        self.digest = _digest(self.binary)
        self.remote_binary = stager.stage(self.binary, f"runner/benchmark_model-{self.digest}")
        if self.settings.hexagon_lib_dir:
            directory = Path(os.path.expanduser(self.settings.hexagon_lib_dir))
            libs = sorted(p for p in directory.glob("*.so") if HEXAGON_LIBS.match(p.name)) \
                if directory.is_dir() else []
            if any(p.name == "libhexagon_interface.so" for p in libs):
                tag = hashlib.sha256(b"".join(p.read_bytes() for p in libs)).hexdigest()[:12]
                for lib in libs:
                    remote = stager.stage(lib, f"hexagon-{tag}/{lib.name}")
                self.hexagon_dir = remote.rsplit("/", 1)[0]
            else:  # only the hexagon cells fail, with this
                self.hexagon_problem = (
                    f"no libhexagon_interface.so in {directory} (benchmark_model."
                    f"hexagon_lib_dir in {self.device_file}): get the Hexagon NN libraries "
                    "for the phone's DSP")
        if self.settings.external_delegate:
            library = Path(os.path.expanduser(self.settings.external_delegate))
            if not library.is_file():
                raise RunnerUnavailable(f"external delegate not found: {library} "
                                        f"(benchmark_model.external_delegate in "
                                        f"{self.device_file})", "external")
            self.external = stager.stage(library, f"delegates/{_digest(library)}-{library.name}")

    def probe(self, transport: Transport) -> RunnerProbe:
        if self.remote_binary is None:
            raise RuntimeError("stage the runner before probing")
        facts = _device_facts(transport)
        built_for = elf_machine(self.binary)
        device_arch = ABI_MACHINES.get(facts.get("abi") or facts.get("machine") or "",
                                       facts.get("machine"))
        if built_for and device_arch and built_for != device_arch:
            raise RunnerUnavailable(
                f"{self.binary.name} is built for {built_for}, the device is {device_arch} "
                f"({facts.get('abi') or facts.get('machine')}): use the matching build "
                f"(benchmark_model.binary in {self.device_file})", "binary")
        chmod = transport.run(["chmod", "755", self.remote_binary], timeout=60)
        if chmod.returncode != 0:
            raise RunnerUnavailable(f"cannot make {self.remote_binary} executable: "
                                    f"{chmod.tail(2)}", "binary")
        shown = transport.run([self.remote_binary, "--help"], timeout=60)
        text = shown.stdout + shown.stderr
        self.flags = help_flags(text)
        if "graph" not in self.flags:
            raise RunnerUnavailable(
                f"{self.binary.name} did not run as benchmark_model on the device ("
                f"{shown.tail(2) or f'exit code {shown.returncode}'}): check it is the "
                "benchmark_model binary for this device", "binary")
        mask = self.settings.cpu_mask or facts.get("big_cores_mask")
        self.pin = ["taskset", mask] if mask and facts.get("taskset") else []
        return RunnerProbe(
            runner_name=self.name, runner_version=self.digest,
            runtime_name="benchmark_model", runtime_version=_version(text) or self.digest,
            cpu_model=facts.get("soc") or facts.get("cpu_model"),
            cpu_flags=tuple((facts.get("cpu_flags") or "").split()),
            cpu_count=facts.get("cpu_count"), machine=facts.get("abi") or facts.get("machine"),
            platform=facts.get("fingerprint") or facts.get("kernel"))

    def refuse(self, job: RoundJob) -> str | None:
        """Why this build cannot measure the job's backend (before anything runs)."""
        flag = BACKEND_FLAGS.get(job.backend)
        if flag and self.flags and flag not in self.flags:
            return (f"this benchmark_model build has no --{flag} (not in its --help): it would "
                    f"ignore it and measure the CPU; use a build with the {job.backend} "
                    "delegate")
        if job.backend == "hexagon" and self.hexagon_dir is None:
            return self.hexagon_problem or (
                f"backend hexagon needs benchmark_model.hexagon_lib_dir in {self.device_file} "
                "(libhexagon_interface.so and the skel libraries)")
        if job.backend == "external" and self.external is None:
            return f"backend external needs benchmark_model.external_delegate in {self.device_file}"
        return None

    # one round
    def invocation(self, job: RoundJob, scratch: str) -> Invocation:
        if self.remote_binary is None:
            raise RuntimeError("stage the runner first")
        loop = job.loop
        flags = [f"--graph={job.model_path}", f"--num_threads={job.threads}",
                 f"--use_xnnpack={'true' if job.backend == 'xnnpack' else 'false'}",
                 f"--num_runs={loop['min_runs']}", f"--min_secs={loop['min_s']}",
                 f"--max_secs={loop['max_s']}", f"--warmup_runs={loop['warmup_runs']}",
                 f"--warmup_min_secs={loop['warmup_min_s']}"]
        settings = self.settings
        if job.backend == "gpu":
            flags.append("--use_gpu=true")
            if settings.gpu_backend:
                flags.append(f"--gpu_backend={settings.gpu_backend}")
            if settings.gpu_precision_loss_allowed is not None:
                flags.append("--gpu_precision_loss_allowed="
                             f"{str(settings.gpu_precision_loss_allowed).lower()}")
        elif job.backend == "nnapi":
            flags.append("--use_nnapi=true")
            if settings.nnapi_accelerator:
                flags.append(f"--nnapi_accelerator_name={settings.nnapi_accelerator}")
        elif job.backend == "hexagon":
            flags += ["--use_hexagon=true", f"--hexagon_lib_path={self.hexagon_dir}"]
        elif job.backend == "external":
            flags.append(f"--external_delegate_path={self.external}")
            if settings.external_delegate_options:
                flags.append(f"--external_delegate_options={settings.external_delegate_options}")
        flags += list(settings.extra_flags)
        cpus = ["taskset", _mask(job.cpus)] if job.cpus else self.pin
        # the device's state just before and after the round, in the same command
        return Invocation(argv=["sh", "-c", ROUND_SCRIPT, "sh", *cpus, self.remote_binary,
                                *flags])

    def memory_invocation(self, job: RoundJob) -> Invocation:
        """A separate, untimed run for peak memory: --report_peak_memory_footprint polls
        from a thread that would disturb a timed round."""
        timed = self.invocation(job, "")
        return Invocation(argv=[*timed.argv, "--report_peak_memory_footprint=true"])

    def parse_memory(self, outcome: CommandResult) -> tuple[int | None, str]:
        """Peak memory in bytes from a memory run, and the line (or reason) it came from."""
        text, _ = split_snapshots(outcome.stdout + "\n" + outcome.stderr)
        if outcome.returncode != 0:
            return None, f"the memory run exited with code {outcome.returncode}"
        try:
            found = parse_output(text)
        except OutputError as exc:
            return None, str(exc)
        peak = found.overall_peak_memory_mb
        if peak is None:
            return None, "the binary printed no peak memory footprint"
        return int(peak * 1024 * 1024), f"overall peak memory footprint {peak:g} MB"

    def parse(self, outcome: CommandResult, result_bytes: bytes | None,
              job: RoundJob) -> RoundResult:
        combined = outcome.stdout + ("\n" + outcome.stderr if outcome.stderr else "")
        text, snapshots = split_snapshots(combined)
        raw = {"output": text[-20000:], "returncode": outcome.returncode,
               "environment": snapshots}
        if outcome.returncode != 0:
            last = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
            return RoundResult.failure(
                f"benchmark_model exited with code {outcome.returncode}: "
                f"{last or 'no output'}", runner_name=self.name, raw=raw)
        try:
            found = parse_output(text)
        except OutputError as exc:
            return RoundResult.failure(str(exc), runner_name=self.name, raw=raw)
        result = to_result(found, job, self.name, self.digest, raw)
        return dataclasses.replace(result, environment=environment(snapshots))


def to_result(found: BenchmarkOutput, job: RoundJob, runner: str, version: str | None,
              raw: dict) -> RoundResult:
    summary = found.summary
    stats = found.inference
    mean = stats.avg_us if stats.avg_us is not None else found.inference_avg_us
    if summary is None or mean is None:
        return RoundResult.failure("benchmark_model printed no statistics for its timed loop",
                                   runner_name=runner, raw=raw)
    aggregate = Aggregate(
        count=stats.count, mean_us=mean, median_us=stats.median_us, min_us=stats.min_us,
        max_us=stats.max_us, p5_us=stats.p5_us, p95_us=stats.p95_us, std_us=stats.std_us,
        summary="median" if summary.kind == "median" else "mean")
    return RoundResult(
        status="ok", aggregate=aggregate, latencies_us=None,
        warmup_runs=found.warmup.count, init_us=found.init_us,
        first_inference_us=found.first_inference_us, peak_memory_bytes=None,
        runtime_name="benchmark_model", runtime_version=version, runner_name=runner,
        runner_version=version, delegation=delegation(found, job.backend), raw=raw)


DELEGATE_NAMES = {"xnnpack": "xnnpack", "gpu": "gpu", "nnapi": "nnapi", "hexagon": "hexagon"}


def delegation(found: BenchmarkOutput, backend: str) -> Delegation:
    """What the backend's delegate took, from the lines that say so."""
    flag = BACKEND_FLAGS.get(backend)
    if flag and flag in found.unconsumed_flags:
        return Delegation(backend, "no", 0, found.total_nodes,
                          f"the binary ignored --{flag} (Unconsumed cmdline flags)")
    if backend == "cpu":
        return Delegation(backend, "no", 0, found.total_nodes,
                          "built-in kernels (--use_xnnpack=false)")
    name = DELEGATE_NAMES.get(backend)
    mine = [d for d in found.delegations if name is None or name in d.delegate.lower()]
    failures = [line for line in found.delegate_failures
                if name is None or name in line.lower()] or list(found.delegate_failures)
    if failures and not any(d.delegated_nodes for d in mine):
        return Delegation(backend, "no", 0, found.total_nodes, failures[0])
    if mine:
        taken = mine[0]
        evidence = (f"{taken.delegated_nodes} of {taken.total_nodes} nodes delegated"
                    if taken.total_nodes else f"{taken.delegated_nodes} nodes delegated")
        return Delegation(backend, "yes" if taken.delegated_nodes > 0 else "no",
                          taken.delegated_nodes, taken.total_nodes, f"{evidence}: {taken.line}")
    created = [c for c in found.delegate_created if name is None or name in c.lower()]
    if created:
        return Delegation(backend, "yes", None, None, f"created the {created[0]} delegate")
    return Delegation(backend, "unknown", None, None, "the output does not say")


ENV_PREFIX = "BENCH-ENV "
# Runs the binary between two snapshots of what a phone's state can change in a figure:
# hottest thermal zone (millidegrees), battery temperature (tenths of a degree), battery
# status, governors, whether the screen is on, load. Unreadable values stay empty.
ROUND_SCRIPT = r"""
snap() {
  t=$(cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null | sort -n | tail -n 1)
  b=$(cat /sys/class/power_supply/battery/temp 2>/dev/null)
  c=$(cat /sys/class/power_supply/battery/status 2>/dev/null)
  g=$(cat /sys/devices/system/cpu/cpufreq/policy*/scaling_governor 2>/dev/null | sort -u | tr '
' ',')
  w=$(dumpsys power 2>/dev/null | grep -m 1 -o 'mWakefulness=[A-Za-z]*' | cut -d= -f2)
  l=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
  echo "BENCH-ENV $1 thermal=$t battery=$b status=$c governors=$g wakefulness=$w load=$l"
}
snap before >&2
"$@"
rc=$?
snap after >&2
exit $rc
"""


def split_snapshots(text: str) -> tuple[str, dict[str, dict[str, str]]]:
    """The tool's own output, and the before/after snapshots taken around it."""
    kept, snapshots = [], {}
    for line in text.splitlines():
        if line.startswith(ENV_PREFIX):
            when, *pairs = line[len(ENV_PREFIX):].split()
            snapshots[when] = dict(p.split("=", 1) for p in pairs if "=" in p)
        else:
            kept.append(line)
    return "\n".join(kept), snapshots


def _float(text: str | None, scale: float) -> float | None:
    try:
        return float(text) / scale if text not in (None, "") else None
    except ValueError:
        return None


def environment(snapshots: dict[str, dict[str, str]]) -> RoundEnvironment | None:
    if not snapshots:
        return None
    before, after = snapshots.get("before", {}), snapshots.get("after", {})
    status = after.get("status") or before.get("status") or ""
    awake = after.get("wakefulness") or before.get("wakefulness") or ""
    governors = (after.get("governors") or before.get("governors") or "").strip(",")
    return RoundEnvironment(
        loadavg_1m=_float(before.get("load"), 1.0),
        temperature_c=_float(after.get("thermal"), 1000.0),
        temperature_before_c=_float(before.get("thermal"), 1000.0),
        battery_temperature_c=_float(after.get("battery"), 10.0),
        charging={"Charging": True, "Full": True, "Discharging": False,
                  "Not charging": False}.get(status),
        screen_on={"Awake": True, "Asleep": False, "Dozing": False}.get(awake),
        governor=governors or None)


def _mask(cpus: tuple[int, ...]) -> str:
    return format(sum(1 << c for c in cpus), "x")


def _version(text: str) -> str | None:
    found = re.search(r"(?:TF ?Lite|LiteRT)[^\n]*?version[:= ]+([0-9][\w.\-]*)", text,
                      re.IGNORECASE)
    return found.group(1) if found else None


FACTS_SCRIPT = r"""
abi=$(getprop ro.product.cpu.abi 2>/dev/null)
echo "abi=$abi"
echo "machine=$(uname -m)"
echo "kernel=$(uname -sr)"
echo "fingerprint=$(getprop ro.build.fingerprint 2>/dev/null)"
echo "soc=$(getprop ro.soc.model 2>/dev/null || true)"
echo "cpu_count=$(grep -c ^processor /proc/cpuinfo)"
echo "cpu_model=$(grep -m1 -E '^(Hardware|model name)' /proc/cpuinfo | cut -d: -f2-)"
echo "cpu_flags=$(grep -m1 -E '^(Features|flags)' /proc/cpuinfo | cut -d: -f2-)"
if command -v taskset >/dev/null 2>&1; then echo "taskset=1"; fi
for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do
  [ -r "$f" ] && echo "maxfreq=$(echo "$f" | sed 's|.*/cpu\([0-9]*\)/cpufreq.*|\1|') $(cat "$f")"
done
exit 0
"""


def _device_facts(transport: Transport) -> dict:
    """ABI, kernel, build fingerprint, SoC, CPU count and the big cores' mask."""
    try:
        result = transport.run(["sh", "-c", FACTS_SCRIPT], timeout=60)
    except TransportError as exc:
        raise RunnerUnavailable(f"cannot read the device's facts: {exc}", "reachable") from None
    facts: dict = {}
    freqs: dict[int, int] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "maxfreq":
            cpu, _, freq = value.partition(" ")
            if cpu.isdigit() and freq.isdigit():
                freqs[int(cpu)] = int(freq)
        elif value:
            facts[key] = value
    if facts.get("cpu_count", "").isdigit():
        facts["cpu_count"] = int(facts["cpu_count"])
    else:
        facts.pop("cpu_count", None)
    if freqs and len(set(freqs.values())) > 1:  # big.LITTLE: pin to the fastest cores
        top = max(freqs.values())
        facts["big_cores_mask"] = _mask(tuple(c for c, f in freqs.items() if f == top))
    facts["taskset"] = facts.get("taskset") == "1"
    return facts

