"""Package measure holds the timing, memory and table helpers that the benchmarks share.

Timed loops are bounded twice, by seconds and by a count, so no measurement
runs away on a slow engine or a large machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timing:
    """Calls made in a timed loop, their total time and per-call latencies (seconds)."""

    calls: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def per_second(self) -> float:
        """Calls per second of time spent inside the calls."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-quantile (0..1) of the latencies, in milliseconds."""
        return percentile(self.latencies, q) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(
    call: Callable[[T], object], items: Sequence[T], seconds: float, max_calls: int = 10_000_000
) -> Timing:
    """Call ``call`` on ``items`` round-robin until ``seconds`` pass or ``max_calls`` calls."""
    latencies: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    n = len(items)
    i = 0
    while i < max_calls and (i == 0 or clock() < deadline):
        item = items[i % n]
        t0 = clock()
        call(item)
        latencies.append(clock() - t0)
        i += 1
    return Timing(i, sum(latencies), tuple(latencies))


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine() -> dict[str, object]:
    """What the numbers were measured on: cores, memory, CPU model, Python."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cores": cores(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, for saying how busy it was."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not Unix
        return "-"


def process_tree(pid: int) -> list[int]:
    """A live process and its live descendants (Linux ``/proc``); empty once it has exited."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        found.append(current)
        for task in tasks:
            with contextlib.suppress(OSError):
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """The CPU time (user and system) the live processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_of_mib(pids: Sequence[int]) -> float:
    """The resident memory of the live processes ``pids`` together, in MiB."""
    return round(sum(_status_kib("VmRSS", pid) for pid in pids) / 1024, 1)


def _status_kib(field: str, pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib() -> float:
    """Resident memory of this process now, in MiB."""
    return round(_status_kib("VmRSS") / 1024, 1)


def peak_rss_mib() -> float:
    """Peak resident memory of this process, in MiB."""
    peak = _status_kib("VmHWM")
    if not peak:  # pragma: no cover - not Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024, 1)


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc ``malloc_trim``), so RSS shows what is live."""
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def files_size_mib(paths: Iterable[Path]) -> float:
    """The total size of the files that exist among ``paths``, in MiB."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return round(total / 2**20, 1)


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database file and its WAL and shared-memory companions."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def ratio(ours: object, theirs: object) -> float | None:
    """Ours / theirs rounded for printing, or None when either is missing or zero."""
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or not theirs:
        return None
    return round(ours / theirs, 1)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a plain-text table with one column per key (the union of keys, in order)."""
    if not rows:
        return "(no rows)"
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    # Text columns read left-aligned, numbers right-aligned.
    text = [any(isinstance(row.get(c), str) for row in rows) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(
            v.ljust(w) if left else v.rjust(w) for v, w, left in zip(r, widths, text, strict=True)
        ).rstrip()
        for r in cells
    ]
    return "\n".join(lines)
