"""CPU contention during a timed block: did another process take the cores the cell was timed on?

On a 2-core machine a 2-thread torch step runs 5-20x slower while another process holds a core (measured
here: a plain Unet-resnet18 32 px step, 0.2 s at 1 thread, 0.7-5 s at 2 threads beside one busy neighbour),
and nothing in the numbers themselves says so. As NVML says a GPU was shared, this tracker says a CPU was:
from `/proc` at the block's start and end (never inside it), on the cores the cell may run on
(`sched_getaffinity`):

- the cores' busy time (`/proc/stat`: user, nice, system, irq, softirq, steal) minus the CPU time of the
  cell's own process group (the cell and its DataLoader workers, `/proc/<pid>/stat`) = other processes'
  CPU time on those cores, as a share of the cores' capacity over the block;
- steal time (a hypervisor running someone else on our vCPU), the load average before and after;
- the busiest other processes (by CPU time over the block);
- the cell's demand: torch threads + DataLoader workers against the cores (oversubscribed when more).

`contended` is other processes holding at least `CONTENDED_SHARE` of the cores, or steal above
`STEAL_SHARE`. Where /proc is missing (not Linux) the tracker is absent: fields are never made up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

CONTENDED_SHARE = 0.10  # others used >= 10% of the cell's cores over the block
STEAL_SHARE = 0.05
TOP = 5
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal
STEAL_FIELD = 7


def _cpu_times(cores: set[int]) -> tuple[float, float, float] | None:
    """(busy, steal, total) jiffies summed over `cores`, from /proc/stat's per-cpu lines."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = steal = total = 0.0
    seen = False
    for line in lines:
        name, *vals = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            idx = int(name[3:])
        except ValueError:
            continue
        if idx not in cores:
            continue
        v = [float(x) for x in vals[:8]] + [0.0] * (8 - min(len(vals), 8))
        busy += sum(v[i] for i in BUSY_FIELDS)
        steal += v[STEAL_FIELD]
        total += sum(v[:8])
        seen = True
    return (busy, steal, total) if seen else None


def _proc_table() -> dict[int, tuple[str, int, float]]:
    """pid -> (comm, process group, CPU jiffies: utime + stime) for every readable process."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # comm is in parentheses and may contain spaces; fields after it are space-separated
        lp, rp = raw.find("("), raw.rfind(")")
        if lp < 0 or rp < 0:
            continue
        rest = raw[rp + 2:].split()
        try:
            out[int(entry.name)] = (raw[lp + 1:rp], int(rest[2]), float(rest[11]) + float(rest[12]))
        except (IndexError, ValueError):
            continue
    return out


class CpuContention:
    def __init__(self, cores: set[int], threads: int, workers: int, own_groups: tuple[int, ...] = ()) -> None:
        self.cores, self.threads, self.workers = cores, threads, workers
        self.hz = float(os.sysconf("SC_CLK_TCK"))
        self.pgid = os.getpgid(0)
        self.own = {self.pgid, *own_groups}  # a DDP job's other ranks (each a session of its own under torchrun)
        self._t0 = self._t1 = 0.0
        self._cpu0: tuple[float, float, float] | None = None
        self._cpu1: tuple[float, float, float] | None = None
        self._procs0: dict[int, tuple[str, int, float]] = {}
        self._procs1: dict[int, tuple[str, int, float]] = {}
        self._load0: tuple[float, float, float] | None = None
        self._load1: tuple[float, float, float] | None = None

    def __enter__(self) -> CpuContention:
        self._load0 = os.getloadavg()
        self._procs0 = _proc_table()
        self._cpu0 = _cpu_times(self.cores)
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._t1 = time.monotonic()
        self._cpu1 = _cpu_times(self.cores)
        self._procs1 = _proc_table()
        self._load1 = os.getloadavg()

    def result(self, images: int) -> dict[str, Any]:
        wall = self._t1 - self._t0
        n = len(self.cores)
        out: dict[str, Any] = {
            "source": "/proc", "cores": sorted(self.cores), "n_cores": n, "cell_threads": self.threads,
            "dataloader_workers": self.workers, "wall_s": wall,
            "loadavg_start": list(self._load0 or []), "loadavg_end": list(self._load1 or []),
            "oversubscribed": self.threads + self.workers > n,
        }
        deltas = []
        own = 0.0
        for pid, (comm, pgid, cpu1) in self._procs1.items():
            cpu0 = self._procs0.get(pid, (comm, pgid, 0.0))[2] if pid in self._procs0 else 0.0
            d = max(cpu1 - cpu0, 0.0) / self.hz
            if pgid in self.own:
                own += d
            elif d > 0:
                deltas.append((d, pid, comm))
        deltas.sort(reverse=True)
        out["own_cpu_s"] = own
        out["top_others"] = [{"pid": pid, "comm": comm, "cpu_s": d} for d, pid, comm in deltas[:TOP]]
        if self._cpu0 is None or self._cpu1 is None or wall <= 0:
            out.update(others_share=None, steal_share=None, contended=None,
                       why="/proc/stat unreadable: contention unknown")
            return out
        busy = (self._cpu1[0] - self._cpu0[0]) / self.hz
        steal = (self._cpu1[1] - self._cpu0[1]) / self.hz
        total = (self._cpu1[2] - self._cpu0[2]) / self.hz
        others = max(busy - steal - own, 0.0)  # steal is in busy, and is not a process of this machine
        capacity = total if total > 0 else wall * n
        share = others / capacity
        steal_share = steal / capacity
        contended = share >= CONTENDED_SHARE or steal_share >= STEAL_SHARE
        out.update(busy_core_s=busy, others_cpu_s=others, others_share=share, steal_share=steal_share,
                   contended=contended)
        if contended:
            parts = []
            if share >= CONTENDED_SHARE:
                who = ", ".join(f"{o['comm']} (pid {o['pid']}) {o['cpu_s']:.1f} s" for o in out["top_others"][:3])
                parts.append(f"other processes used {share:.0%} of the cell's {n} core(s) over its {wall:.1f} s "
                             f"timed block ({others:.1f} CPU s" + (f": {who}" if who else "") + ")")
            if steal_share >= STEAL_SHARE:
                parts.append(f"the hypervisor stole {steal_share:.0%} of the cores' time")
            out["why"] = "; ".join(parts)
        return out


def for_cell(ctx: Any) -> CpuContention | None:
    """A tracker for any cell on Linux (a GPU cell's host threads and workers compete for cores too)."""
    if not Path("/proc/stat").exists() or not hasattr(os, "sched_getaffinity"):
        return None
    cores = set(os.sched_getaffinity(0))
    return CpuContention(cores, int(ctx.threads), int(ctx.params.get("num_workers") or 0),
                         tuple(ctx.params.get("own_groups") or ()))


def wait_quiet(max_wait_s: float, window_s: float = 2.0, sleep: Any = time.sleep) -> tuple[bool, float, str | None]:
    """Wait until no other process holds this process's cores: windows of `window_s` watched as a cell's timed
    block is (`CpuContention`, this process idle meanwhile), until one is not contended or `max_wait_s` passed.
    Returns (quiet, seconds waited, why the last window was contended)."""
    t0 = time.monotonic()
    why = None
    while True:
        w = CpuContention(set(os.sched_getaffinity(0)), 0, 0)
        with w:
            sleep(window_s)
        r = w.result(1)
        if r.get("contended") is False:
            return True, time.monotonic() - t0, None
        why = r.get("why")
        if time.monotonic() - t0 >= max_wait_s:
            return False, time.monotonic() - t0, why
