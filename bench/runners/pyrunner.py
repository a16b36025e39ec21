"""Self-contained TFLite benchmark runner: one process, one round of one cell.

This file is copied to devices and run there with the device's own Python, so it
imports nothing from the project: only the standard library, numpy and whichever
TFLite interpreter module the device has. It must keep working on Python 3.8.

Usage:  python -I pyrunner.py JOB.json RESULT.json
        python -I pyrunner.py --probe          (one line: BENCH-PROBE {json})

A job with `"mode": "evaluate"` is no round: it runs the model once on every input of a
staged batch (a .npy array) and writes the outputs (another .npy), for accuracy measured
where the model runs. It is never timed and never runs inside a round.

The job and the result are JSON files, never stdout: native libraries print there.
The result is written even when the round fails, with the error as text; the exit
code is 0 when a result was written, whatever its status. A figure the runner cannot
know is null, never 0 or a placeholder string.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback

JOB_SCHEMA_VERSION = 1
RESULT_SCHEMA_VERSION = 2  # 2: init_us, peak_memory_bytes; null for unknown readings
RUNNER_VERSION = "5"  # 5: evaluate mode
PROBE_PREFIX = "BENCH-PROBE "

# Module candidates for `tflite_module = "auto"`, most capable first.
AUTO_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
DISTRIBUTIONS = {
    "ai_edge_litert.interpreter": "ai-edge-litert",
    "tflite_runtime.interpreter": "tflite-runtime",
    "tensorflow.lite": "tensorflow",
}


class RunnerFailure(Exception):
    """A failure whose message is already clear enough to show the user."""


def now_s():
    return time.perf_counter()


def read_text(path, default=""):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def cpu_description():
    """CPU model name and feature flags, as the kernel reports them (None: not reported)."""
    model, flags = platform.processor() or None, []
    for line in read_text("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = value.split()
    return model, flags


def load_average():
    try:
        return list(os.getloadavg())
    except (OSError, AttributeError):
        return None


def proc_stat():
    """Aggregate CPU jiffies (steal included) and the instantaneous runnable count."""
    cpu, running = None, None
    for line in read_text("/proc/stat").splitlines():
        if line.startswith("cpu "):
            cpu = [int(x) for x in line.split()[1:]]
        elif line.startswith("procs_running"):
            running = int(line.split()[1])
    return cpu, running


def process_times():
    """{pid: (name, utime + stime jiffies)} for every process we can read."""
    times = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return times
    for pid in pids:
        text = read_text("/proc/%s/stat" % pid)
        if not text:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        fields = text[text.rfind(")") + 2:].split()
        try:
            times[int(pid)] = (name, int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            continue
    return times


def governor():
    """The CPU frequency governor(s) of the CPUs we may run on, or None if unreadable."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    values = set()
    for cpu in cpus:
        value = read_text("/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cpu)
        if value.strip():
            values.add(value.strip())
    return ",".join(sorted(values)) if values else None


def temperature_c():
    """The hottest thermal zone in degrees C, or None where none is readable."""
    hottest = None
    try:
        zones = [z for z in os.listdir("/sys/class/thermal") if z.startswith("thermal_zone")]
    except OSError:
        return None
    for zone in zones:
        text = read_text("/sys/class/thermal/%s/temp" % zone).strip()
        if text.lstrip("-").isdigit():
            value = int(text) / 1000.0
            hottest = value if hottest is None else max(hottest, value)
    return hottest


def environment_start():
    cpu, running = proc_stat()
    return {"time": time.time(), "cpu": cpu, "procs_running": running,
            "processes": process_times(), "loadavg": load_average()}


def environment_report(start):
    """The round's environment: load, steal, governor, temperature, busy neighbours."""
    end_cpu, running_end = proc_stat()
    samples = [x for x in (start["procs_running"], start.get("procs_running_mid"), running_end)
               if x is not None]
    wall = max(time.time() - start["time"], 1e-6)
    steal = None
    if start["cpu"] and end_cpu and len(end_cpu) > 7:
        delta = [b - a for a, b in zip(start["cpu"], end_cpu)]
        total = sum(delta[:8])
        steal = delta[7] / total if total > 0 else 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = []
    me = os.getpid()
    for pid, (name, used) in process_times().items():
        before = start["processes"].get(pid)
        if pid == me or before is None:
            continue
        share = (used - before[1]) / ticks / wall
        if share >= 0.2:
            busy.append({"pid": pid, "name": name, "cpu_share": round(share, 2)})
    busy.sort(key=lambda p: -p["cpu_share"])
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    temperature = temperature_c()
    return {
        "loadavg": start["loadavg"],
        # The runner counts itself; the median of three samples ignores a passing blip.
        "procs_running": sorted(samples)[len(samples) // 2] if samples else None,
        "procs_running_samples": samples,
        "steal": steal,
        "governor": governor(),
        "temperature_c": temperature,
        "affinity": affinity,
        "busy_processes": busy[:5],
        "wall_s": wall,
    }


def memory_kib(field):
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or None."""
    for line in read_text("/proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def reset_peak_rss():
    """Reset the kernel's high-water mark so the peak we read is ours alone."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib():
    peak = memory_kib("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage // 1024 if sys.platform == "darwin" else usage
    except Exception:
        return None


def import_interpreter(requested):
    """Import the interpreter module; returns (module, module name, runtime, version)."""
    import importlib

    candidates = AUTO_MODULES if requested == "auto" else (requested,)
    errors = []
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken native library
            errors.append("%s: %s" % (name, str(exc).splitlines()[0] if str(exc) else type(exc)))
            continue
        if name == "tensorflow.lite":
            module = module.python.interpreter if hasattr(module, "python") else module
        return module, name, DISTRIBUTIONS.get(name, name), runtime_version(name)
    raise RunnerFailure(
        "no TFLite interpreter module could be imported (%s); install ai-edge-litert or "
        "tflite-runtime for %s, or set tflite_module in the device file"
        % ("; ".join(errors), sys.executable)
    )


def runtime_version(module_name):
    distribution = DISTRIBUTIONS.get(module_name)
    try:
        from importlib import metadata

        return metadata.version(distribution)
    except Exception:
        pass
    try:
        import importlib

        top = importlib.import_module(module_name.split(".")[0])
        version = getattr(top, "__version__", None)
        return str(version) if version else None
    except Exception:
        return None


def make_interpreter(module, job):
    """Build the interpreter with the backend's delegate policy."""
    kwargs = {"model_path": job["model_path"], "num_threads": int(job["threads"])}
    backend = job["backend"]
    resolver = getattr(module, "OpResolverType", None)
    if backend == "cpu":
        if resolver is None:
            raise RunnerFailure(
                "backend 'cpu' needs OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, "
                "which this TFLite runtime does not have; use backend 'xnnpack'"
            )
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif backend != "xnnpack":
        raise RunnerFailure(
            "backend %r is not supported by the python runner (supported: xnnpack, cpu)" % backend
        )
    return module.Interpreter(**kwargs)


def delegate_evidence(interpreter, backend):
    """Did the backend's delegate take the graph? From DELEGATE nodes in the graph.

    After a delegate is applied, the nodes it took are replaced by DELEGATE nodes. None
    means it took nothing; we never infer it from dtypes or speed. Backend 'cpu' runs
    with no delegate at all, so 'no' is what it should say.
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception as exc:
        return {"backend": backend, "delegated": "unknown", "delegate_nodes": None,
                "nodes": None, "evidence": "op details unavailable: %s" % exc}
    delegate_nodes = sum(1 for op in ops if op.get("op_name") == "DELEGATE")
    model_nodes = len(ops) - delegate_nodes
    if backend == "cpu":
        verdict = "no" if delegate_nodes == 0 else "unknown"
    else:
        verdict = "yes" if delegate_nodes else "no"
    return {
        "backend": backend,
        "delegated": verdict,
        "delegate_nodes": delegate_nodes,
        "nodes": model_nodes,
        "evidence": "%d DELEGATE node(s) replaced parts of the %d-node graph"
        % (delegate_nodes, model_nodes),
    }


def make_inputs(numpy, interpreter, seed):
    """Seeded random inputs that respect each input's dtype and quantization."""
    rng = numpy.random.RandomState(seed)
    inputs = []
    for detail in interpreter.get_input_details():
        shape = [int(x) if int(x) > 0 else 1 for x in detail["shape"]]
        dtype = numpy.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            low, high = max(info.min, -128), min(info.max, 127)
            value = rng.randint(low, high + 1, size=shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.randint(0, 2, size=shape).astype(dtype)
        else:
            raise RunnerFailure("input %r has dtype %s, which the runner cannot fill"
                                % (detail.get("name"), dtype))
        inputs.append((detail["index"], value))
    return inputs


OVERHEAD_LIMIT = 0.01  # the loop's own cost may be at most this share of an inference
MAX_BATCH = 10000


def loop_overhead_us(clock, samples=2000):
    """The timing loop's own cost per sample: the same loop around a call that does
    nothing (two clock reads, a call, an append), median over `samples`."""
    def nothing():
        pass

    costs = []
    append = costs.append
    for _ in range(samples):
        before = clock()
        nothing()
        append(clock() - before)
    costs.sort()
    return costs[len(costs) // 2] / 1000.0


def timed_loop(interpreter, job):
    """Warm-up, then the timed loop, with benchmark_model's stopping rules.

    When the loop's own cost per sample is over OVERHEAD_LIMIT of one inference (a model
    of a few microseconds), each sample times a batch of invokes and records their mean;
    the batch size and the overhead go into the result."""
    invoke = interpreter.invoke
    clock = time.perf_counter_ns
    warmup_runs, warmup_min_s = int(job["warmup_runs"]), float(job["warmup_min_s"])
    start, done = now_s(), 0
    while done < warmup_runs or now_s() - start < warmup_min_s:
        invoke()
        done += 1
    per_invoke_us = (now_s() - start) * 1e6 / max(done, 1)
    overhead = loop_overhead_us(clock)
    limit = float(job.get("overhead_limit", OVERHEAD_LIMIT))
    batch = 1
    if per_invoke_us > 0 and overhead > limit * per_invoke_us:
        batch = min(MAX_BATCH, int(math.ceil(overhead / (limit * per_invoke_us))))
    min_runs, min_s, max_s = int(job["min_runs"]), float(job["min_s"]), float(job["max_s"])
    latencies = []
    append = latencies.append
    start = now_s()
    while True:
        if batch == 1:
            before = clock()
            invoke()
            append((clock() - before) / 1000.0)
        else:
            before = clock()
            for _ in range(batch):
                invoke()
            append((clock() - before) / 1000.0 / batch)
        elapsed = now_s() - start
        if elapsed >= max_s or (len(latencies) >= min_runs and elapsed >= min_s):
            break
    return done, latencies, overhead, batch


def set_affinity(cpus):
    if not cpus:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if not hasattr(os, "sched_setaffinity"):
        raise RunnerFailure("this platform cannot pin CPUs; remove 'cpus' from the device file")
    available = sorted(os.sched_getaffinity(0))
    wanted = set(int(c) for c in cpus)
    if not wanted <= set(available):
        raise RunnerFailure("cannot pin to CPU(s) %s: this device lets the runner use CPUs %s; "
                            "fix `cpus` in the device file or --cpus"
                            % (",".join(str(c) for c in sorted(wanted - set(available))),
                               ",".join(str(c) for c in available)))
    os.sched_setaffinity(0, wanted)
    return sorted(os.sched_getaffinity(0))


def measure(job, result):
    result["affinity"] = set_affinity(job.get("cpus"))
    import numpy

    environment = environment_start()

    result["numpy_version"] = numpy.__version__
    module, name, runtime, version = import_interpreter(job.get("tflite_module", "auto"))
    result["runtime"] = {"name": runtime, "version": version, "module": name}
    if not os.path.isfile(job["model_path"]):
        raise RunnerFailure("model file not found on the device: %s" % job["model_path"])

    reset_ok = reset_peak_rss()
    baseline_kib = memory_kib("VmRSS") if reset_ok else peak_rss_kib()
    started = now_s()
    interpreter = make_interpreter(module, job)
    interpreter.allocate_tensors()
    result["init_us"] = (now_s() - started) * 1e6
    result["delegation"] = delegate_evidence(interpreter, job["backend"])

    for index, value in make_inputs(numpy, interpreter, int(job.get("input_seed", 0))):
        interpreter.set_tensor(index, value)
    started = now_s()
    interpreter.invoke()
    result["first_inference_us"] = (now_s() - started) * 1e6
    environment["procs_running_mid"] = proc_stat()[1]
    (result["warmup_runs"], result["latencies_us"], result["loop_overhead_us"],
     result["batch"]) = timed_loop(interpreter, job)
    peak = peak_rss_kib()
    result["peak_memory_bytes"] = ((peak - baseline_kib) * 1024
                                   if None not in (peak, baseline_kib) else None)
    result["memory_method"] = "VmHWM after clear_refs minus VmRSS" if reset_ok else "maxrss delta"
    result["environment"] = environment_report(environment)


def quantize(numpy, value, detail):
    """A float input as the model takes it: integer inputs with their own scale and zero
    point, float inputs cast."""
    dtype = numpy.dtype(detail["dtype"])
    if dtype.kind == "f":
        return value.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise RunnerFailure("integer input %r has no quantization scale" % detail.get("name"))
    info = numpy.iinfo(dtype)
    return numpy.clip(numpy.round(value / scale + zero_point), info.min,
                      info.max).astype(dtype)


def dequantize(numpy, value, detail):
    if numpy.dtype(detail["dtype"]).kind == "f":
        return value.astype(numpy.float32)
    scale, zero_point = detail["quantization"]
    if not scale:
        return value.astype(numpy.float32)
    return ((value.astype(numpy.float64) - zero_point) * scale).astype(numpy.float32)


def decode_inputs(numpy, pixels, normalise):
    """The staged batch as float32 model inputs. uint8 pixels are normalised exactly as the
    host's preprocessing does, in float32: (pixels / 255 - mean) / std."""
    if normalise is None:
        return pixels.astype(numpy.float32)
    mean = numpy.asarray(normalise["mean"], dtype=numpy.float32)
    std = numpy.asarray(normalise["std"], dtype=numpy.float32)
    values = pixels.astype(numpy.float32) / numpy.float32(255.0)
    return ((values - mean) / std).astype(numpy.float32)


def evaluate(job, result):
    """Every input of the batch through the model, one invoke each (as deployed); the
    first output, dequantized, saved as float32 rows."""
    result["affinity"] = set_affinity(job.get("cpus"))
    import numpy

    result["numpy_version"] = numpy.__version__
    module, name, runtime, version = import_interpreter(job.get("tflite_module", "auto"))
    result["runtime"] = {"name": runtime, "version": version, "module": name}
    if not os.path.isfile(job["model_path"]):
        raise RunnerFailure("model file not found on the device: %s" % job["model_path"])
    if not os.path.isfile(job["inputs_path"]):
        raise RunnerFailure("input batch not found on the device: %s" % job["inputs_path"])
    interpreter = make_interpreter(module, job)
    interpreter.allocate_tensors()
    result["delegation"] = delegate_evidence(interpreter, job["backend"])
    inputs = decode_inputs(numpy, numpy.load(job["inputs_path"], allow_pickle=False),
                           job.get("normalise"))
    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    expected = [int(x) if int(x) > 0 else 1 for x in in_detail["shape"]][1:]
    if list(inputs.shape[1:]) != expected:
        raise RunnerFailure("the model takes inputs of shape %s; the batch holds %s"
                            % (expected, list(inputs.shape[1:])))
    rows = []
    started = now_s()
    for k in range(inputs.shape[0]):
        interpreter.set_tensor(in_detail["index"], quantize(numpy, inputs[k:k + 1], in_detail))
        interpreter.invoke()
        rows.append(dequantize(numpy, interpreter.get_tensor(out_detail["index"]),
                               out_detail).reshape(-1))
    result["seconds"] = now_s() - started
    result["inputs"] = int(inputs.shape[0])
    outputs = numpy.stack(rows) if rows else numpy.zeros((0, 0), dtype=numpy.float32)
    temporary = job["outputs_path"] + ".partial"
    with open(temporary, "wb") as handle:
        numpy.save(handle, outputs, allow_pickle=False)
    os.replace(temporary, job["outputs_path"])
    result["outputs_shape"] = list(outputs.shape)


def run(job_path, result_path):
    cpu_model, cpu_flags = cpu_description()
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "runner_version": RUNNER_VERSION,
        "status": "failed",
        "error": None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_flags": cpu_flags,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_average(),
        "started_unix": time.time(),
    }
    try:
        with open(job_path) as handle:
            job = json.load(handle)
        if job.get("schema_version") != JOB_SCHEMA_VERSION:
            raise RunnerFailure("job schema %r, runner expects %d; push the matching runner"
                                % (job.get("schema_version"), JOB_SCHEMA_VERSION))
        result["job"] = job
        if job.get("mode", "round") == "evaluate":
            evaluate(job, result)
        else:
            measure(job, result)
        result["status"] = "ok"
    except RunnerFailure as exc:
        result["error"] = str(exc)
    except Exception as exc:
        message = str(exc).strip().splitlines()
        result["error"] = "%s: %s" % (type(exc).__name__, " ".join(message)[:2000])
        result["traceback"] = traceback.format_exc()[-4000:]
    result["loadavg_after"] = load_average()
    result["finished_unix"] = time.time()
    temporary = result_path + ".partial"
    with open(temporary, "w") as handle:
        json.dump(result, handle)
    os.replace(temporary, result_path)
    return 0


def probe():
    """What this device offers the runner: Python, numpy, TFLite modules, CPU."""
    import importlib

    cpu_model, cpu_flags = cpu_description()
    out = {"runner_version": RUNNER_VERSION, "python": sys.version.split()[0],
           "machine": platform.machine(), "platform": platform.platform(),
           "cpu_model": cpu_model, "cpu_flags": cpu_flags, "cpu_count": os.cpu_count(),
           "runtimes": {}, "runtime_errors": {}}
    try:
        import numpy

        out["numpy"] = numpy.__version__
    except Exception as exc:
        out["numpy"] = None
        out["numpy_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for name in AUTO_MODULES:
        try:
            importlib.import_module(name)
            out["runtimes"][name] = {"version": runtime_version(name)}
        except Exception as exc:
            out["runtimes"][name] = None
            out["runtime_errors"][name] = (str(exc).splitlines()[0] if str(exc)
                                           else type(exc).__name__)
    sys.stdout.write(PROBE_PREFIX + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        sys.exit(probe())
    if len(sys.argv) != 3:
        sys.stderr.write("usage: pyrunner.py JOB.json RESULT.json | pyrunner.py --probe\n")
        sys.exit(2)
    sys.exit(run(sys.argv[1], sys.argv[2]))
