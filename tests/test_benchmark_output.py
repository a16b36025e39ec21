# ruff: noqa: E101, E501, W191
"""parse_output against real benchmark_model outputs, and the stand-in binary against it.

The outputs below are quoted verbatim from public sources (each names its repository and file
or issue; markup indentation of the enclosing document removed), so the parser is pinned to
what the tool really prints, not to what we think it prints. Where no verbatim output of a
format was found, the example is built from the tool's own format strings and says so. (Long
lines and tabs are the tool's: hence the file-wide noqa.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runners.benchmark_output import (
    COARSE_MEDIAN_US,
    Delegation,
    OutputError,
    Stats,
    Summary,
    parse_output,
)

FAKE = Path(__file__).resolve().parent / "fakes" / "benchmark_model"

# --- real outputs

# NobuoTsukamoto/meta-tensorflow-lite, doc/tensorflow-lite-benchmark.md (HEAD f87ee8e; the same
# output since the recipe's first commit): TFLite 2.x on qemuriscv64, --enable_op_profiling.
# Warm-up "count=1 curr=X" form, scientific averages, and op-profiling tables whose
# "Timings (microseconds): count=…" lines are not the timed loop. Up to the first table's end.
NOBUO_RISCV = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model ./mobilenet_v1_1.0_224.tflite
The input model file size (MB): 16.9008
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
	             [node type]	          [start]	  [first]	 [avg ms]	     [%]	  [cdf%]	  [mem KB]	[times called]	[Name]
	         AllocateTensors	            0.000	    1.356	    1.356	100.000%	100.000%	     0.000	        1	AllocateTensors/0

============================== Top by Computation Time ==============================
	             [node type]	          [start]	  [first]	 [avg ms]	     [%]	  [cdf%]	  [mem KB]	[times called]	[Name]
	         AllocateTensors	            0.000	    1.356	    1.356	100.000%	100.000%	     0.000	        1	AllocateTensors/0

Number of nodes executed: 1
============================== Summary by node type ==============================
	             [Node type]	  [count]	  [avg ms]	    [avg %]	    [cdf %]	  [mem KB]	[times called]
	         AllocateTensors	        1	     1.356	   100.000%	   100.000%	     0.000	        1

Timings (microseconds): count=1 curr=1356
Memory (bytes): count=0
1 nodes observed
"""

# TexasInstruments/processor-sdk-doc, source/linux/Foundational_Components/Machine_Learning/
# tflite.rst (HEAD a34a7d9): LiteRT with "INFO: " prefixes and p5/median/p95, --use_xnnpack=false.
TI_LITERT_CPU = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite]
INFO: Signature to run: []
INFO: Use xnnpack: [0]
INFO: Loaded model /usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 5.579ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
"""

# Same file, the --use_xnnpack=true run (no blank line after the stat lines in this copy).
TI_LITERT_XNNPACK = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite]
INFO: Signature to run: []
INFO: Use xnnpack: [1]
INFO: Loaded model /usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 1 delegate kernels.
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 614.333ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=905463 p5=905463 median=905463 p95=905463
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=900416 curr=898333 min=898007 max=906121 avg=899641 std=1549 p5=898333 median=899281 p95=904305
INFO: Inference timings in us: Init: 614333, First inference: 905463, Warmup (avg): 905463, Inference (avg): 899641
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=146.363 overall=150.141
"""

# Same file at commit 14fe730c (2020; the Processor SDK's TensorFlow Lite 1.x sample): the
# oldest format, "Running benchmark for N iterations" and "Average inference timings … no
# stats: …".
TI_TF112 = """\
STARTING!
Num runs: [50]
Inter-run delay (seconds): [-1]
Num threads: [1]
Benchmark name: []
Output prefix: []
Warmup runs: [1]
Graph: [mobilenet_v1_1.0_224_quant.tflite]
Input layers: []
Input shapes: []
Use nnapi : [0]
Loaded model mobilenet_v1_1.0_224_quant.tflite
resolved reporter
Initialized session in 4.452ms
Running benchmark for 1 iterations
count=1 curr=146161

Running benchmark for 50 iterations
count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
"""

# tflite-soc/zedboard-setup, benchmarking.md (HEAD 742a0c6): "Average inference timings" with
# "… but terminate if exceeding …" markers, on a Zedboard (armv7l).
ZEDBOARD = """\
STARTING!
Min num runs: [50]
Min runs duration (seconds): [1]
Max runs duration (seconds): [150]
Inter-run delay (seconds): [-1]
Num threads: [1]
Benchmark name: []
Output prefix: []
Min warmup runs: [1]
Min warmup runs duration (seconds): [0.5]
Graph: [../../tensorflow-models/mobilenet-v1/mobilenet_v1_1.0_224_quant.tflite]
Input layers: []
Input shapes: []
Use gpu : [0]
Allow fp16 : [0]
Require full delegation : [0]
Enable op profiling: [0]
Max profiling buffer entries: [1024]
Loaded model ../../tensorflow-models/mobilenet-v1/mobilenet_v1_1.0_224_quant.tflite
resolved reporter
Initialized session in 21.039ms
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=751932

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=747738 curr=747428 min=747331 max=748577 avg=747733 std=293

Average inference timings in us: Warmup: 751932, Init: 21039, no stats: 747733
"""

# lp6m/yolov5s_android, benchmark/README.md (HEAD cef737c), TF 2.4 on a Xiaomi Mi11: the author
# kept only the timed-loop line; "Peak memory footprint (MB): init=… overall=…" is the max RSS.
LP6M_CPU = """\
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""

# Same file, "NNAPI qti-default (Not working)": the delegate fails and the run ends.
LP6M_NNAPI_FAILED = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/yolov5s_int8_640.tflite]
#threads used for CPU inference: [4]
Use NNAPI: [1]
NNAPI execution preference: [sustained_speed]
NNAPI accelerator name: [qti-default]
NNAPI accelerators available: [qti-default,qti-dsp,qti-gpu,nnapi-reference]
Loaded model /data/local/tmp/yolov5s_int8_640.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for NNAPI.
ERROR: NN API returned error ANEURALNETWORKS_OP_FAILED at line 3779 while completing NNAPI compilation.

ERROR: Node number 248 (TfLiteNnapiDelegate) failed to prepare.

ERROR: Restored original execution plan after delegate application failure.
Failed to apply NNAPI delegate.
Benchmarking failed.
"""

# PyPI package kingjimin 2.0.1, kingjimin/test.py (mirrored in pypi-data/pypi-mirror-129): the
# "result_string" of a benchmark on a Raspberry Pi 4, JSON string unescaped. The build ignored
# --allow_fp16 (no "=value") and had no GPU delegate.
KINGJIMIN_RPI4 = """\
STARTING!
Unconsumed cmdline flags: --allow_fp16
Log parameter values verbosely: [0]
Min num runs: [50]
Max runs duration (seconds): [180]
Num threads: [4]
Graph: [b40647a5-6c5b-48ad-b196-745488334183/b40647a5-6c5b-48ad-b196-745488334183.model]
Enable op profiling: [0]
CSV File to export profiling data to: [b40647a5-6c5b-48ad-b196-745488334183/b40647a5-6c5b-48ad-b196-745488334183.model.info]
#threads used for CPU inference: [4]
Use gpu: [1]
Use xnnpack: [1]
Loaded model b40647a5-6c5b-48ad-b196-745488334183/b40647a5-6c5b-48ad-b196-745488334183.model
The GPU delegate compile options are only supported on Android or iOS platforms or when the tool was built with -DCL_DELEGATE_NO_GL.
GPU acceleration is unsupported on this platform.
XNNPACK delegate created.
Going to apply 1 delegates one after another.
Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 22 delegate kernels.
The input model file size (MB): 0.541472
Initialized session in 18.738ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 180 seconds.
count=6 first=140706 curr=74599 min=74599 max=140706 avg=85791.2 std=24559

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 180 seconds.
count=50 first=74456 curr=74516 min=73909 max=75323 avg=74481.6 std=268

Inference timings in us: Init: 18738, First inference: 140706, Warmup (avg): 85791.2, Inference (avg): 74481.6
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=6.44141 overall=64.8633
"""

# tensorflow/tensorflow issue #53207 (Snapdragon 865, Hexagon 698): --use_hexagon=true fails and
# the run goes on on the CPU. The stored copy of the issue ends mid-line, before the timed loop.
TF53207_HEXAGON_TRUNCATED = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [models/resnetv1_50_quant.tflite]
Input layers: [input]
Input shapes: [1,224,224,3]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Use Hexagon: [1]
Hexagon profiling: [1]
Loaded model models/resnetv1_50_quant.tflite
loaded libcdsprpc.so
Could not create Hexagon delegate: platform may not support delegate or required libraries are missing
Tensor # 0 is named input_1 but flags call it input
The input model file size (MB): 26.2023
Initialized session in 65.973ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=6 first=100521 curr=80282 min=79211 max=100521 avg=83420.5 std=7670

Running benchmark for at least 50 iterations and at least 1 seconds but terminate"""

# tensorflow/tensorflow issue #56747 (a maintainer's inference_diff run, not benchmark_model):
# real delegate lines, the Hexagon delegate taking 136 of 139 nodes. Up to the cut of the copy.
TF56747_HEXAGON_PARTIAL = """\
INFO: Initialized TensorFlow Lite runtime.
Func remote_handle_control not available on this device (NULL).
loaded libadsprpc.so
Hexagon delegate created.
INFO: TfLiteHexagonDelegate delegate: 136 nodes delegated out of 139 nodes with 2 partitions.

VERBOSE: Replacing 136 node(s) with delegate (TfLiteHexagonDelegate) node, yielding 5 partitions.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
I0000 00:00:1658183303.208241    8218 inference_profiler_stage.cc:78] Test interpreter has been initialized.
W0000 00:00:1658183303.209016    8218 tflite_inference_stage.cc:146]
VERBOSE: Replacing 12 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 7 partitions.
"""

# A benchmark report in a public GitHub repository ("全模型 TFLite Mobile Benchmark 效能測試報告",
# 2026-07-14, §6; the code index that served it does not name the repository): `adb logcat -d -s
# tflite` of android_aarch64_benchmark_model.apk on a OnePlus CPH2641, LiteRT percentiles,
# XNNPACK taking 539 of 548 nodes.
LOGCAT_CPH2641 = """\
07-14 13:14:52.097 22838 22838 I tflite  : Log parameter values verbosely: [0]
07-14 13:14:52.097 22838 22838 I tflite  : Min num runs: [25]
07-14 13:14:52.097 22838 22838 I tflite  : Num threads: [4]
07-14 13:14:52.097 22838 22838 I tflite  : Graph: [/data/local/tmp/best_int8.tflite]
07-14 13:14:52.097 22838 22838 I tflite  : Signature to run: []
07-14 13:14:52.097 22838 22838 I tflite  : #threads used for CPU inference: [4]
07-14 13:14:52.097 22838 22838 I tflite  : Use gpu: [0]
07-14 13:14:52.097 22838 22838 I tflite  : Use NNAPI: [0]
07-14 13:14:52.098 22838 22838 I tflite  : Loaded model /data/local/tmp/best_int8.tflite
07-14 13:14:52.099 22838 22838 I tflite  : Initialized TensorFlow Lite runtime.
07-14 13:14:52.113 22838 22838 I tflite  : Created TensorFlow Lite XNNPACK delegate for CPU.
07-14 13:14:52.115 22838 22838 I tflite  : Replacing 539 out of 548 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 19 partitions for subgraph 0.
07-14 13:14:52.190 22838 22838 I tflite  : The input model file size (MB): 3.06409
07-14 13:14:52.190 22838 22838 I tflite  : Initialized session in 92.318ms.
07-14 13:14:52.218 22838 22838 I tflite  : Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
07-14 13:14:52.859 22838 22838 I tflite  : count=3 first=235158 curr=200386 min=199462 max=235158 avg=211669 std=16613 p5=199462 median=200386 p95=235158
07-14 13:14:52.859 22838 22838 I tflite  : Running benchmark for at least 25 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
07-14 13:14:56.520 22838 22838 I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
07-14 13:14:56.521 22838 22838 I tflite  : Inference timings in us: Init: 92318, First inference: 235158, Warmup (avg): 211669, Inference (avg): 145528
07-14 13:14:56.521 22838 22838 I tflite  : Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
07-14 13:14:56.521 22838 22838 I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
"""

# Same report, the yolo26l_fp16 excerpt: the author kept only the last lines, so the one stat
# line has no "Running benchmark" before it (and the averages are in scientific notation).
LOGCAT_CPH2641_EXCERPT = """\
07-14 13:23:01.971 25113 25113 I tflite  : count=25 first=2440784 curr=2510677 min=2422486 max=2510677 avg=2.44949e+06 std=19367 p5=2423455 median=2447822 p95=2491568
07-14 13:23:01.971 25113 25113 I tflite  : Inference timings in us: Init: 450850, First inference: 2562790, Warmup (avg): 2.56279e+06, Inference (avg): 2.44949e+06
07-14 13:23:01.971 25113 25113 I tflite  : Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
07-14 13:23:01.971 25113 25113 I tflite  : Memory footprint delta from the start of the tool (MB): init=286.961 overall=358.59
"""

# tensorflow/tensorflow, tensorflow/lite/tools/benchmark/android/README.md (commit 1d66b78):
# `adb logcat | grep "Inference timings in us"` of the benchmark APK, the docs' "..." included.
TF_APK_LOGCAT_GREP = """\
... tflite  : Inference timings in us: Init: 1007529, First inference: 4098, Warmup (avg): 1686.59, Inference (avg): 1687.92
"""

# tensorflow/docs-l10n, site/zh-cn/lite/performance/measurement.md: the same grep in the old
# wording ("Average inference timings in us: Warmup: …, Init: …, Inference: …").
TF_APK_LOGCAT_GREP_OLD = """\
... tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1
"""

# --- built from the tool's format strings (no verbatim public output found)

# A few-µs model: every run the same whole microsecond, so Stat::OutputToStream prints
# "count=N curr=X(all same)" (xla/tsl/util/stats_calculator.h, LiteRT percentiles appended);
# the peak line and "Memory status" block are BenchmarkLoggingListener::OnBenchmarkEnd's
# (tflite/tools/benchmark/benchmark_model.cc, including its "exeution" typo); the unconsumed
# warning is BenchmarkModel::ParseFlags' on a build without the Hexagon delegate.
BUILT_ALL_SAME = """\
INFO: STARTING!
WARN: Unconsumed cmdline flags: --use_hexagon=true --hexagon_lib_path=/data/local/tmp
INFO: Log parameter values verbosely: [0]
INFO: Graph: [tiny.tflite]
INFO: Signature to run: []
INFO: Loaded model tiny.tflite
INFO: The input model file size (MB): 0.002124
INFO: Initialized session in 0.812ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=98765 curr=4(all same) p5=4 median=4 p95=4

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=250000 curr=3(all same) p5=3 median=3 p95=3

INFO: Inference timings in us: Init: 812, First inference: 4, Warmup (avg): 4, Inference (avg): 3
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=0.0078125 overall=0.0117188
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.5
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 12 MB
INFO: + RssAnnon           : 4 MB
INFO: + RssFile + RssShmem : 8 MB
"""


# --- parser on real outputs


def test_current_format_with_scientific_averages_and_op_profiling_tables():
    out = parse_output(NOBUO_RISCV)
    assert out.warmup == Stats(count=1, avg_us=3512391, std_us=None, min_us=3512391,
                               max_us=3512391, median_us=3512391, p5_us=3512391,
                               p95_us=3512391, first_us=3512391, curr_us=3512391)
    # The profiler's "Timings (microseconds): count=1 curr=1356" is not the timed loop.
    assert out.inference == Stats(count=50, avg_us=2.95034e6, std_us=109798, min_us=2727568,
                                  max_us=3189954, first_us=2990275, curr_us=2913402)
    assert out.inference.median_us is None and out.inference.p95_us is None
    assert (out.init_us, out.first_inference_us) == (17187, 3512391)
    assert (out.warmup_avg_us, out.inference_avg_us) == (3.51239e6, 2.95034e6)
    assert (out.init_footprint_mb, out.overall_footprint_mb) == (4.21094, 46.0859)
    assert out.model_size_mb == 16.9008
    assert out.peak_memory_mb is None and out.peak_memory_init_mb is None
    assert out.overall_peak_memory_mb is None
    assert out.summary == Summary(2.95034e6, "avg")  # no median printed by this build
    assert out.delegations == () and out.delegated_nodes is None and out.total_nodes is None
    assert out.delegate_created == out.delegates_applied == out.delegate_failures == ()
    assert out.unconsumed_flags == () and out.errors == ()
    assert "count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 " \
           "std=109798" in out.lines_read


def test_litert_percentiles_and_info_prefixes():
    out = parse_output(TI_LITERT_CPU)
    assert out.warmup == Stats(count=1, avg_us=1357602, min_us=1357602, max_us=1357602,
                               median_us=1357602, p5_us=1357602, p95_us=1357602,
                               first_us=1357602, curr_us=1357602)
    assert out.inference == Stats(count=50, avg_us=1.24027e6, std_us=2565, min_us=1238588,
                                  max_us=1252566, median_us=1239807, p5_us=1238753,
                                  p95_us=1247415, first_us=1249964, curr_us=1240143)
    assert (out.init_us, out.first_inference_us) == (5579, 1357602)
    assert (out.warmup_avg_us, out.inference_avg_us) == (1.3576e6, 1.24027e6)
    assert (out.init_footprint_mb, out.overall_footprint_mb) == (6.36328, 109.832)
    assert out.model_size_mb == 67.3128
    assert out.summary == Summary(1239807, "median")
    assert out.delegate_created == out.delegates_applied == out.delegate_failures == ()
    assert out.delegations == () and out.errors == () and out.unconsumed_flags == ()


def test_explicit_xnnpack_is_evidence_of_delegation():
    out = parse_output(TI_LITERT_XNNPACK)
    assert out.delegate_created == ("XNNPACK",)
    assert out.delegates_applied == ("XNNPACK",)
    assert out.delegate_failures == ()
    assert out.warmup.count == 1 and out.warmup.median_us == 905463
    assert out.inference == Stats(count=50, avg_us=899641, std_us=1549, min_us=898007,
                                  max_us=906121, median_us=899281, p5_us=898333,
                                  p95_us=904305, first_us=900416, curr_us=898333)
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us) == (614333, 905463, 905463)
    assert (out.init_footprint_mb, out.overall_footprint_mb) == (146.363, 150.141)
    assert out.summary == Summary(899281, "median")


def test_tf_1_12_format():
    out = parse_output(TI_TF112)
    assert out.warmup.count == 1 and out.warmup.curr_us == 146161
    assert out.inference == Stats(count=50, avg_us=137722, std_us=896, min_us=137079,
                                  max_us=143416, first_us=137789, curr_us=137254)
    assert (out.init_us, out.warmup_avg_us, out.inference_avg_us) == (4452, 146161, 137722)
    assert out.first_inference_us is None  # this wording has no "First inference"
    assert out.init_footprint_mb is None and out.model_size_mb is None
    assert out.summary == Summary(137722, "avg")


def test_average_inference_timings_format():
    out = parse_output(ZEDBOARD)
    assert out.warmup.count == 1 and out.warmup.avg_us == 751932
    assert out.inference == Stats(count=50, avg_us=747733, std_us=293, min_us=747331,
                                  max_us=748577, first_us=747738, curr_us=747428)
    assert (out.init_us, out.warmup_avg_us, out.inference_avg_us) == (21039, 751932, 747733)
    assert out.summary == Summary(747733, "avg")


def test_unconsumed_flag_gpu_fallback_and_old_peak_memory():
    out = parse_output(KINGJIMIN_RPI4)
    assert out.unconsumed_flags == ("allow_fp16",)  # a bool flag without "=true" does nothing
    assert out.delegate_failures == ("GPU acceleration is unsupported on this platform.",)
    assert out.delegate_created == ("XNNPACK",)
    assert out.delegates_applied == ("XNNPACK",)
    assert out.warmup == Stats(count=6, avg_us=85791.2, std_us=24559, min_us=74599,
                               max_us=140706, first_us=140706, curr_us=74599)
    assert out.inference == Stats(count=50, avg_us=74481.6, std_us=268, min_us=73909,
                                  max_us=75323, first_us=74456, curr_us=74516)
    assert (out.peak_memory_init_mb, out.peak_memory_mb) == (6.44141, 64.8633)
    assert out.init_footprint_mb is None and out.overall_footprint_mb is None
    assert (out.init_us, out.first_inference_us) == (18738, 140706)
    assert out.summary == Summary(74481.6, "avg")


def test_lone_stat_line_is_placed_by_the_timings_it_agrees_with():
    out = parse_output(LP6M_CPU)
    assert out.warmup == Stats()
    assert out.inference == Stats(count=50, avg_us=249684, std_us=1442, min_us=247067,
                                  max_us=254474, first_us=249042, curr_us=250889)
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us) == (16242, 360262, 304586)
    assert (out.peak_memory_init_mb, out.peak_memory_mb) == (4.92969, 138.809)
    assert out.summary == Summary(249684, "avg")


def test_logcat_lines_with_partial_xnnpack_delegation():
    out = parse_output(LOGCAT_CPH2641)
    assert out.delegations == (Delegation(
        "TfLiteXNNPackDelegate", 539, 548,
        "Replacing 539 out of 548 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 19 partitions for subgraph 0."),)
    assert (out.delegated_nodes, out.total_nodes) == (539, 548)
    assert out.delegate_created == ("XNNPACK",)
    assert out.warmup == Stats(count=3, avg_us=211669, std_us=16613, min_us=199462,
                               max_us=235158, median_us=200386, p5_us=199462, p95_us=235158,
                               first_us=235158, curr_us=200386)
    assert out.inference == Stats(count=25, avg_us=145528, std_us=13583, min_us=140071,
                                  max_us=195121, median_us=141253, p5_us=140545,
                                  p95_us=187533, first_us=187533, curr_us=140990)
    assert (out.init_us, out.first_inference_us) == (92318, 235158)
    assert (out.init_footprint_mb, out.overall_footprint_mb) == (54.2852, 73.4102)
    assert out.model_size_mb == 3.06409
    assert out.summary == Summary(141253, "median")
    assert out.errors == () and out.delegate_failures == ()


def test_logcat_excerpt_without_markers():
    out = parse_output(LOGCAT_CPH2641_EXCERPT)
    assert out.warmup == Stats()
    assert out.inference.count == 25 and out.inference.avg_us == 2.44949e6
    assert out.inference.median_us == 2447822
    assert (out.warmup_avg_us, out.inference_avg_us) == (2.56279e6, 2.44949e6)
    assert out.summary == Summary(2447822, "median")


@pytest.mark.parametrize("text, init, warmup_avg, first, value", [
    (TF_APK_LOGCAT_GREP, 1007529, 1686.59, 4098, 1687.92),
    (TF_APK_LOGCAT_GREP_OLD, 4108, 91471, None, 80660.1),
])
def test_grepped_timings_line_alone(text, init, warmup_avg, first, value):
    out = parse_output(text)
    assert out.inference == Stats() and out.warmup == Stats()
    assert (out.init_us, out.warmup_avg_us, out.first_inference_us) == (init, warmup_avg, first)
    assert out.inference_avg_us == value
    assert out.summary == Summary(value, "avg")


def test_failed_nnapi_run_is_an_error_that_keeps_the_evidence():
    with pytest.raises(OutputError) as caught:
        parse_output(LP6M_NNAPI_FAILED)
    message = str(caught.value)
    assert "no timed-loop statistics" in message
    assert "STARTING!" in message and "Benchmarking failed." in message
    partial = caught.value.partial
    assert partial.delegate_created == ("NNAPI",)
    assert partial.delegate_failures == (
        "NN API returned error ANEURALNETWORKS_OP_FAILED at line 3779 while completing NNAPI "
        "compilation.",
        "Node number 248 (TfLiteNnapiDelegate) failed to prepare.",
        "Restored original execution plan after delegate application failure.",
        "Failed to apply NNAPI delegate.",
    )
    assert partial.errors[0].startswith("NN API returned error")
    assert partial.inference == Stats() and partial.summary is None


def test_hexagon_failure_in_an_output_cut_before_the_timed_loop():
    with pytest.raises(OutputError) as caught:
        parse_output(TF53207_HEXAGON_TRUNCATED)
    partial = caught.value.partial
    assert partial.delegate_failures == (
        "Could not create Hexagon delegate: platform may not support delegate or required "
        "libraries are missing",)
    assert partial.warmup.count == 6 and partial.warmup.avg_us == 83420.5
    assert partial.inference == Stats()  # the second "Running benchmark" has no stats yet
    assert partial.model_size_mb == 26.2023


def test_hexagon_partial_delegation_lines():
    partial = pytest.raises(OutputError, parse_output, TF56747_HEXAGON_PARTIAL).value.partial
    assert (partial.delegated_nodes, partial.total_nodes) == (136, 139)
    assert [(d.delegate, d.delegated_nodes, d.total_nodes) for d in partial.delegations] == [
        ("TfLiteHexagonDelegate", 136, 139),
        ("TfLiteHexagonDelegate", 136, None),
        ("TfLiteXNNPackDelegate", 12, None),
    ]
    assert partial.delegate_created == ("Hexagon", "XNNPACK")


def test_all_same_form_peak_monitoring_and_ignored_hexagon_flags():
    out = parse_output(BUILT_ALL_SAME)
    assert out.unconsumed_flags == ("use_hexagon", "hexagon_lib_path")
    assert out.warmup == Stats(count=98765, avg_us=4, std_us=0.0, min_us=4, max_us=4,
                               median_us=4, p5_us=4, p95_us=4, first_us=4, curr_us=4)
    assert out.inference == Stats(count=250000, avg_us=3, std_us=0.0, min_us=3, max_us=3,
                                  median_us=3, p5_us=3, p95_us=3, first_us=3, curr_us=3)
    assert out.overall_peak_memory_mb == 12.5
    assert (out.init_footprint_mb, out.overall_footprint_mb) == (0.0078125, 0.0117188)
    # A median of whole microseconds this small is coarse: the average is the summary.
    assert out.summary == Summary(3, "avg")


def test_summary_prefers_the_median_only_where_it_is_fine_grained():
    fast = parse_output(TI_LITERT_CPU.replace("median=1239807", "median=42"))
    assert fast.summary == Summary(1.24027e6, "avg")
    at_threshold = parse_output(
        TI_LITERT_CPU.replace("median=1239807", f"median={COARSE_MEDIAN_US:g}"))
    assert at_threshold.summary == Summary(COARSE_MEDIAN_US, "median")


def test_logcat_history_reads_the_last_run():
    assert parse_output(TI_LITERT_CPU + TI_LITERT_XNNPACK) == parse_output(TI_LITERT_XNNPACK)


def test_empty_output_is_an_error():
    with pytest.raises(OutputError, match="the output is empty"):
        parse_output("")
    with pytest.raises(OutputError, match="the output is empty"):
        parse_output(" \n\n")


def test_garbage_is_an_error_quoting_its_start_and_end():
    short = pytest.raises(OutputError, parse_output, "Segmentation fault\n").value
    assert "'Segmentation fault'" in str(short) and short.partial.summary is None
    text = "/system/bin/sh: benchmark_model: not found\n" + "x" * 2000 + "\nthe very end"
    message = str(pytest.raises(OutputError, parse_output, text).value)
    assert "/system/bin/sh: benchmark_model" in message and "the very end" in message
    assert "x" * 300 not in message and len(message) < 500
    assert isinstance(pytest.raises(ValueError, parse_output, "x").value, OutputError)


def test_zero_runs_are_not_reported_as_zero_latency():
    # --dry_run: both loops empty, and the tool prints its int64 NaN as 0.
    dry = TI_LITERT_CPU.replace(
        "count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602",
        "count=0 p5=0 median=0 p95=0",
    ).replace(
        "count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 "
        "p5=1238753 median=1239807 p95=1247415", "count=0 p5=0 median=0 p95=0",
    ).replace(
        "First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06",
        "First inference: 0, Warmup (avg): 0, Inference (avg): 0")
    caught = pytest.raises(OutputError, parse_output, dry).value
    assert caught.partial.inference == Stats(count=0) and caught.partial.inference_avg_us is None
    assert caught.partial.first_inference_us is None


# --- the stand-in binary

FAST = ["--num_runs=20", "--min_secs=0", "--warmup_runs=3", "--warmup_min_secs=0",
        "--num_threads=1"]
LOGCAT_LINE = re.compile(r"^\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} +\d+ +\d+ [IWE] tflite  : ")


def run_fake(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The stand-in as a runner would start it (isolated mode), stderr merged in order."""
    return subprocess.run([sys.executable, "-I", str(FAKE), *args],
                          env={**os.environ, **env}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny_model(tiny_variants) -> str:
    return str(tiny_variants["fp32"].path)


def check_consistent(out, runs: int = 20, warmup: int = 3) -> None:
    assert out.inference.count == runs and out.warmup.count == warmup
    for stats in (out.inference, out.warmup):
        assert 0 < stats.min_us <= stats.p5_us <= stats.median_us <= stats.p95_us
        assert stats.median_us <= stats.max_us and stats.min_us <= stats.avg_us <= stats.max_us
    assert out.first_inference_us == out.warmup.first_us
    assert out.inference_avg_us == pytest.approx(out.inference.avg_us, rel=1e-5)
    assert out.init_us > 0 and out.model_size_mb > 0
    assert out.summary.value_us > 0


def test_fake_is_standalone():
    text = FAKE.read_text()
    assert text.startswith("#!/usr/bin/env python3\n") and os.access(FAKE, os.X_OK)
    assert not re.search(r"^\s*(from|import) bench\b", text, re.M)


def test_fake_plain_output(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[:2] == ["INFO: STARTING!", "INFO: Log parameter values verbosely: [0]"]
    assert ("INFO: Running benchmark for at least 3 iterations and at least 0 seconds but "
            "terminate if exceeding 150 seconds.") in lines
    assert ("INFO: Running benchmark for at least 20 iterations and at least 0 seconds but "
            "terminate if exceeding 150 seconds.") in lines
    assert any(line.startswith("INFO: Inference timings in us: Init: ") for line in lines)
    assert any(line.startswith("INFO: Memory footprint delta from the start of the tool (MB): ")
               for line in lines)
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegate_created == ("XNNPACK",) and out.delegates_applied == ()
    assert out.delegate_failures == () and out.unconsumed_flags == () and out.errors == ()
    assert out.init_footprint_mb is not None and out.overall_peak_memory_mb is None


def test_fake_logcat_output(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST, BENCH_FAKE_LOGCAT="1")
    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert all(LOGCAT_LINE.match(line) for line in lines), lines
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegations[0].delegate == "TfLiteXNNPackDelegate"
    assert 0 < out.delegated_nodes <= out.total_nodes


def test_fake_scientific_output(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST, BENCH_FAKE_SCIENTIFIC="1")
    assert result.returncode == 0, result.stdout
    assert re.search(r" avg=\d\.\d{5}e[+-]\d\d ", result.stdout)
    assert re.search(r"Inference \(avg\): \d\.\d{5}e[+-]\d\d$", result.stdout, re.M)
    check_consistent(parse_output(result.stdout))


def test_fake_hexagon_falls_back_to_the_cpu(tiny_model, tmp_path):
    result = run_fake(f"--graph={tiny_model}", *FAST, "--use_hexagon=true",
                      f"--hexagon_lib_path={tmp_path}")
    assert result.returncode == 0, result.stdout
    assert "INFO: Use Hexagon: [1]" in result.stdout
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegate_failures == (
        "Failed to load libhexagon_interface.so",
        "Could not create Hexagon delegate: platform may not support delegate or required "
        "libraries are missing",
    )
    assert out.delegate_created == ("XNNPACK",)  # what really ran

    (tmp_path / "libhexagon_interface.so").write_bytes(b"")  # libraries, but still no DSP
    out = parse_output(run_fake(f"--graph={tiny_model}", *FAST, "--use_hexagon=true",
                                f"--hexagon_lib_path={tmp_path}").stdout)
    assert out.delegate_failures[0].startswith("Failed to fetch Hexagon NN version.")
    assert out.delegate_failures[1].startswith("Could not create Hexagon delegate")


def test_fake_gpu_and_nnapi_fall_back_to_the_cpu(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST, "--use_gpu=true", "--use_nnapi=true",
                      "--use_xnnpack=true")
    assert result.returncode == 0, result.stdout
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegate_failures == ("GPU acceleration is unsupported on this platform.",
                                     "NNAPI acceleration is unsupported on this platform.")
    assert out.delegates_applied == ("XNNPACK",)


def test_fake_external_delegate_that_does_not_load(tiny_model, tmp_path):
    missing = tmp_path / "libvx_delegate.so"
    result = run_fake(f"--graph={tiny_model}", *FAST, f"--external_delegate_path={missing}")
    assert result.returncode == 0, result.stdout
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegate_failures == (
        f"Unable to load external delegate from : {missing} ({missing}: cannot open shared "
        "object file: No such file or directory)",)


def test_fake_without_xnnpack(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST, "--use_xnnpack=false")
    assert result.returncode == 0, result.stdout
    out = parse_output(result.stdout)
    check_consistent(out)
    assert out.delegate_created == () and "INFO: Use xnnpack: [0]" in result.stdout


def test_fake_ignores_flags_it_does_not_know(tiny_model):
    result = run_fake(f"--graph={tiny_model}", *FAST, "--use_npu=true", "--allow_fp16")
    assert result.returncode == 0, result.stdout
    assert "WARN: Unconsumed cmdline flags: --use_npu=true --allow_fp16" in result.stdout
    out = parse_output(result.stdout)
    assert out.unconsumed_flags == ("use_npu", "allow_fp16")
    check_consistent(out)


def test_fake_peak_memory_and_max_secs(tiny_model):
    result = run_fake(f"--graph={tiny_model}", "--num_runs=100000000", "--max_secs=0.3",
                      "--warmup_runs=1", "--warmup_min_secs=0",
                      "--report_peak_memory_footprint=true")
    assert result.returncode == 0, result.stdout
    assert "but terminate if exceeding 0.3 seconds." in result.stdout
    assert "INFO: Memory status at the end of exeution:" in result.stdout
    out = parse_output(result.stdout)
    assert 0 < out.inference.count < 100000000 and out.overall_peak_memory_mb > 0


def test_fake_dry_run_reports_no_latency(tiny_model):
    result = run_fake(f"--graph={tiny_model}", "--dry_run=true")
    assert result.returncode == 0, result.stdout
    assert "INFO: count=0 p5=0 median=0 p95=0" in result.stdout
    with pytest.raises(OutputError):
        parse_output(result.stdout)


@pytest.mark.parametrize("content, message", [
    (None, "ERROR: Could not open '{path}'."),
    (b"not a flatbuffer at all", "ERROR: The model is not a valid Flatbuffer buffer"),
])
def test_fake_missing_or_corrupt_graph(tmp_path, content, message):
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    result = run_fake(f"--graph={path}", *FAST)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert message.format(path=path) in lines
    assert lines[-2:] == [f"ERROR: Failed to load model {path}", "ERROR: Benchmarking failed."]
    with pytest.raises(OutputError):
        parse_output(result.stdout)


def test_fake_help_lists_every_flag_like_the_real_tool():
    result = run_fake("--help")
    assert result.returncode == 1  # the real tool returns an error after printing usage
    lines = result.stdout.splitlines()
    assert lines[0] == "INFO: STARTING!"
    assert lines[1] == f"ERROR: usage: {FAKE} <flags>" and lines[2] == "Flags:"
    assert lines[-1] == "ERROR: Benchmarking failed."
    rows = {}
    for line in lines[3:]:
        match = re.match(r"^\t--(\w+)=(\S*) *\t(int32|float|bool|string)\toptional\t(.+)$", line)
        if match:
            rows.setdefault(match.group(1), match.groups()[1:])
    assert rows["num_runs"] == ("50", "int32", "expected number of runs, see also min_secs, "
                                                "max_secs")
    assert rows["use_hexagon"] == ("false", "bool", "Use Hexagon delegate")
    assert rows["hexagon_lib_path"][:2] == ("/data/local/tmp", "string")
    assert rows["warmup_min_secs"][:2] == ("0.5", "float")
    for flag in ("graph", "num_threads", "use_xnnpack", "use_gpu", "use_nnapi",
                 "external_delegate_path", "warmup_runs", "min_secs", "max_secs",
                 "enable_op_profiling", "report_peak_memory_footprint", "verbose"):
        assert flag in rows


def test_fake_rejects_a_bad_value_as_the_real_tool_does(tiny_model):
    result = run_fake(f"--graph={tiny_model}", "--num_runs=many")
    assert result.returncode == 1
    assert "ERROR: Failed to parse flag 'num_runs' against argv '--num_runs=many'" in (
        result.stdout)
