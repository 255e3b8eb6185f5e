"""How many threads torch should use here: the cores this process may run on, less those
other programs keep busy, shared among the processes of one job.

Why: torch's CPU kernels split each operation among its threads and wait for the slowest.
A thread that shares its core with another program's busy process waits for the scheduler's
next time slice, and every one of the thousands of operations in an epoch waits with it: on
a 2-core machine beside one busy process, two threads trained 2-16x slower than one. On a
quiet machine two threads are 1.6x faster than one. So the count is chosen when a command
starts, from how busy the cores were while it imported torch (a second or so, measured for
free). Load also comes and goes while a run trains (a browser, a build, a second notebook):
so a run looks again at each epoch's end (Pacer), over the second half of that epoch, and
trains the next epoch with the count that is right now. The count changes the last bits of
some sums, so each epoch's count is recorded in the run's metrics; a run resumed mid-epoch
finishes that epoch with its count, and one trained under the same loads reaches the same
weights.

Nothing here imports torch or changes anything: the CLI sets the count it returns.
"""

import math
import os
import time
from dataclasses import dataclass

# A core counts as another program's when it keeps more than this share of it busy.
BUSY_SHARE = 0.5


@dataclass(frozen=True)
class Sample:
    """CPU time spent on the whole machine and by this process, at one moment."""

    busy: float  # seconds of CPU time spent by every program, all cores together
    total: float  # seconds of CPU time that passed, all cores together (busy + idle)
    ours: float  # seconds of CPU time this process spent
    cores: int  # cores the machine's counters cover


def sample(stat: str = "/proc/stat") -> Sample | None:
    """The machine's CPU counters now; None where they cannot be read (not Linux)."""
    try:
        with open(stat) as handle:
            fields = handle.readline().split()
            cores = sum(1 for line in handle if line.startswith("cpu"))
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    hertz = os.sysconf("SC_CLK_TCK")
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    used = os.times()
    return Sample(
        (sum(ticks) - idle) / hertz, sum(ticks) / hertz, used.user + used.system, max(1, cores)
    )


def others_busy(before: Sample, after: Sample) -> float:
    """Cores other programs kept busy between two samples (this process's own use taken out)."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.ours - before.ours)
    return max(0.0, others / total * after.cores)


def usable() -> int:
    """The cores this process may run on (its affinity), or the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads(cores: int, busy: float = 0.0, processes: int = 1) -> int:
    """Threads for each of `processes` processes of one job on `cores` cores, while other
    programs keep `busy` cores busy: the cores left free, shared out, one at least."""
    free = cores - math.floor(busy + 1 - BUSY_SHARE)
    return max(1, free // max(1, processes))


def choose(since: Sample | None, processes: int = 1, environment=None) -> int | None:
    """The thread count for this process, from how busy the machine was since `since`; None
    when the user set OMP_NUM_THREADS (torch follows it) or nothing could be measured and
    torch's own choice stands."""
    environment = os.environ if environment is None else environment
    if environment.get("OMP_NUM_THREADS"):
        return None
    now = sample()
    busy = others_busy(since, now) if since is not None and now is not None else 0.0
    return threads(usable(), busy, processes)


def recommended(window: float = 0.25, environment=None) -> int:
    """For a notebook or a script: the thread count `choose` gives after watching the machine
    for `window` seconds, or OMP_NUM_THREADS's where the user set it
    (`torch.set_num_threads(mnistlab.cores.recommended())`)."""
    environment = os.environ if environment is None else environment
    since = sample()
    time.sleep(window)
    chosen = choose(since, environment=environment)
    if chosen is not None:
        return chosen
    asked = environment.get("OMP_NUM_THREADS", "")
    return int(asked) if asked.isdigit() and int(asked) > 0 else usable()


class Pacer:
    """The thread count for each epoch of a run, from how busy other programs kept the cores
    over the second half of the epoch before: `mark()` at an epoch's middle starts the window,
    `pacer(current)` at its end gives the count for the next (the current one when the window
    was too short to tell, or nothing could be measured). At most `most` threads (torch's own
    count: its physical cores)."""

    MIN_WINDOW = 0.2  # seconds: a shorter window says too little to change anything

    def __init__(self, most: int, processes: int = 1, stat: str = "/proc/stat"):
        self.most, self.processes, self.stat = max(1, most), processes, stat
        self.since = sample(stat)

    def mark(self) -> None:
        self.since = sample(self.stat)

    def __call__(self, current: int) -> int:
        now = sample(self.stat)
        since, self.since = self.since, now
        if since is None or now is None or now.total - since.total < self.MIN_WINDOW * now.cores:
            return current
        return min(self.most, threads(usable(), others_busy(since, now), self.processes))
