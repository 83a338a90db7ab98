"""Measuring helpers: repeats with min/median/max, paired ratios, load average, machine facts.

Every figure is measured on both sides in the same process (or, for memory, in fresh child
processes started the same way), with repeats interleaved ``ref, studio, studio, ref, …`` so a
burst of load from other work on the machine hits both sides alike. Ratios are computed per
repeat (pairs measured next to each other), then summarised, which cancels slow drifts in load.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    values: list[float]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def fmt(self, digits: int = 1, unit: str = "") -> str:
        """'median (min–max)'; a single value alone."""
        f = f"{{:.{digits}f}}"
        if len(self.values) == 1:
            return f.format(self.values[0]) + unit
        return f"{f.format(self.median)}{unit} ({f.format(self.min)}–{f.format(self.max)})"


@dataclass
class Figure:
    """One figure: per-repeat values of every variant, the paired ratio, and the verdict."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)  # variant -> one value per repeat
    reference: str = "reference"
    headline: str = "studio"  # the studio variant the target is judged on
    target: float | None = None  # ratio the headline must reach (None: absolute target below)
    target_text: str = ""
    absolute_limit: float | None = None  # e.g. start-up seconds, × real time
    notes: list[str] = field(default_factory=list)
    load: tuple = ()  # load averages (1 min) before and after
    status: str = "measured"  # measured | pending | skipped
    aux: set = field(default_factory=set)  # variants that are details (seconds, totals), not sides
    fraction: bool = False  # ratio = studio / reference, target is a ceiling (memory)

    def add(self, variant: str, value: float, aux: bool = False) -> None:
        self.values.setdefault(variant, []).append(float(value))
        if aux:
            self.aux.add(variant)

    def stats(self, variant: str) -> Stats | None:
        vals = self.values.get(variant)
        return Stats(vals) if vals else None

    def ratios(self, variant: str | None = None) -> Stats | None:
        """Per repeat: the studio's advantage (>1: better), or with ``fraction`` studio / reference."""
        variant = variant or self.headline
        a, b = self.values.get(variant), self.values.get(self.reference)
        if not a or not b:
            return None
        pairs = [(s, r) for s, r in zip(a, b) if s > 0 and r > 0]
        if self.fraction or self.higher_is_better:
            return Stats([s / r for s, r in pairs])
        return Stats([r / s for s, r in pairs])

    def met(self) -> bool | None:
        if self.status != "measured":
            return None
        ok = True
        if self.target is not None:
            r = self.ratios()
            if r is None:
                return None
            ok = r.median <= self.target if self.fraction else r.median >= self.target
        if self.absolute_limit is not None:
            s = self.stats(self.headline)
            if s is None:
                return None
            ok = ok and (s.median >= self.absolute_limit if self.higher_is_better else s.median <= self.absolute_limit)
        return ok


def interleaved(repeats: int, sides: list[str]) -> list[list[str]]:
    """Side order per repeat: forward, then backward, so no side is always first."""
    return [sides if i % 2 == 0 else list(reversed(sides)) for i in range(repeats)]


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    """What the numbers were measured on (written at the top of a run file, bench/results.py)."""
    import importlib.metadata as md

    import psutil
    import torch

    cpu = machine_cpu_name()
    versions = {}
    for pkg in ("torch", "transformers", "peft", "accelerate", "miditok", "symusic", "pyfluidsynth", "gradio"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "fluidsynth_cli": _first_line(["fluidsynth", "--version"]),
        "versions": versions,
    }


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not available"


def threads_text(n: int) -> str:
    """How many intra-op threads a figure ran with, for its notes."""
    import torch

    return f"{n} intra-op thread(s)" if n > 0 else f"torch's default {torch.get_num_threads()} intra-op threads"


def capabilities() -> dict:
    """The instructions that decide the default precisions (studio/model/precision.py, packed.py)."""
    import torch

    from studio.model.packed import int8_available, resolve
    from studio.model.precision import cpu_flags

    flags = cpu_flags()
    return {"avx512_bf16": "avx512_bf16" in flags, "avx512_vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
            "amx": any(f.startswith("amx") for f in flags), "int8_kernel": int8_available(),
            "torch_kernels": torch.backends.cpu.get_cpu_capability(), "auto_decoding": resolve("auto", "cpu")}


def capabilities_text(c: dict) -> str:
    """The CPU's capabilities as every bench section states them."""
    def yes(flag: str) -> str:
        return "yes" if c[flag] else "no"

    return (f"AVX-512 BF16 {yes('avx512_bf16')}, VNNI {yes('avx512_vnni')}, AMX {yes('amx')}; "
            f"torch kernels {c['torch_kernels']}")


def defaults_text() -> str:
    """The capabilities and what they make the defaults: LoRA training's and decoding's precision."""
    from studio.model.precision import resolve

    c = capabilities()
    return (f"{capabilities_text(c)}; so LoRA training runs in {resolve('auto', 'cpu')} and decoding in "
            f"{c['auto_decoding']} by default")


def cpu_kind(c: dict | None = None, name: str | None = None) -> str:
    """The row a run's numbers go to in RESULTS.md: the instructions that set the defaults and the
    processor family, e.g. 'AMX Xeon', 'AVX-512 BF16 EPYC', 'AVX2 EPYC'. Two machines of one kind
    differ in clock and memory, not in which code paths run."""
    c = c or capabilities()
    isa = "AMX" if c["amx"] else "AVX-512 BF16" if c["avx512_bf16"] else c["torch_kernels"]
    name = name if name is not None else machine_cpu_name()
    family = next((f for f in ("Xeon", "EPYC", "Core", "Ryzen", "Graviton", "Neoverse") if f in name), "CPU")
    return f"{isa} {family}"


def machine_cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""
