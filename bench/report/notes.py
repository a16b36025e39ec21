""""Why is int8 not faster here?": a note per device from evidence, not folklore.

Two facts decide whether int8 can beat float on a CPU: whether the CPU has an int8
dot-product instruction (x86: AVX-512 VNNI or AVX-VNNI; ARM: the dot-product extension
`asimddp`, and `i8mm` for 8-bit matrix multiply), and whether the runtime actually ran
the int8 graph through XNNPACK (DELEGATE nodes seen) or fell back to built-in kernels.
"""

from __future__ import annotations

from bench.analysis import Analysis

X86_INT8 = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8"}
ARM_INT8 = {"asimddp": "dot product (SDOT/UDOT)", "i8mm": "8-bit matrix multiply (I8MM)"}
INT8_RECIPES = ("int8", "int8-per-tensor")


def int8_features(flags) -> list[str]:
    """The int8 dot-product features among a CPU's flags, by name."""
    present = set(flags or ())
    return [name for flag, name in {**X86_INT8, **ARM_INT8}.items() if flag in present]


def int8_path(flags: set[str]) -> str:
    """What the CPU offers int8 kernels, from its feature flags."""
    x86 = [name for flag, name in X86_INT8.items() if flag in flags]
    arm = [name for flag, name in ARM_INT8.items() if flag in flags]
    if x86 or arm:
        return "has " + " and ".join(x86 + arm) + ": int8 GEMM can use a native int8 " \
            "dot product"
    if "avx2" in flags:
        return ("x86 with AVX2 but no VNNI: int8 dot products take multi-instruction "
                "sequences (VPMADDUBSW/VPMADDWD widening to 16 and 32 bits), roughly the "
                "throughput of float FMA, so int8 mostly saves memory traffic here")
    if "asimd" in flags or "neon" in flags:
        return ("ARM NEON without the dot-product extension: int8 multiply-accumulate widens "
                "through 16 bits, so int8 gains come mostly from bandwidth")
    return "no int8 dot-product feature found in the CPU flags"


def device_notes(analysis: Analysis) -> list[str]:
    """One note per measured device: its CPU's int8 path and what ran each int8 graph."""
    notes = []
    for device in analysis.devices.to_dict("records"):
        lines = device_note(analysis, device)
        if lines:
            notes.append("\n".join([f"\n{lines[0]}", *(f"  - {line}" for line in lines[1:])]))
    return notes


def device_note(analysis: Analysis, device: dict) -> list[str]:
    """A device's note as a heading and its points; empty when nothing was measured."""
    cells = analysis.cells
    mine = cells[cells["device"] == device["device"]]
    if mine.empty or not (mine["rounds"] > 0).any():
        return []
    cpu = device["cpu_model"] or "CPU model not reported"
    lines = [f"why is int8 (not) faster on {device['device']}? CPU: {cpu}"]
    flags = device["cpu_flags"]
    lines.append(int8_path(set(flags)) if flags else "the device did not report its CPU features")
    for cell in mine.to_dict("records"):
        if cell["recipe"] not in INT8_RECIPES or cell["backend"] != "xnnpack" \
                or not cell["rounds"]:
            continue
        verdict = {"yes": "XNNPACK took the int8 graph",
                   "no": "XNNPACK did NOT take the int8 graph: built-in int8 kernels ran",
                   }.get(cell["delegated"], "whether XNNPACK ran it is unknown")
        evidence = cell["delegation_evidence"] or "no graph evidence"
        lines.append(f"{cell['model']} {cell['recipe']}: {verdict} ({evidence}; "
                     f"{cell['runtime_name']} {cell['runtime_version']})")
    return lines
