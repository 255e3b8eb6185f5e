"""The terminal side of the command line: torch's thread count, signals, progress bars."""

import contextlib
import dataclasses
import signal
import sys

from mnistlab import text
from mnistlab.cli import flags
from mnistlab.config import Runtime


def runtime_from_args(args, processes: int = 1) -> Runtime:
    """The machine settings, and torch's thread count set from them (the process is ours):
    --threads, else the cores other programs left free since the command started, shared
    among `processes` (mnistlab.cores). The count chosen is the runtime's."""
    return _threads_from_args(args, processes)[0]


def training_runtime(args):
    """runtime_from_args, and for a run whose thread count mnistlab chose (not --threads, nor
    OMP_NUM_THREADS), a cores.Pacer that chooses it again each epoch; else None."""
    return _threads_from_args(args, 1)


def _threads_from_args(args, processes: int):
    import torch

    from mnistlab import cores

    runtime = flags.read_runtime(args)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
        return runtime, None
    chosen = cores.choose(getattr(args, "cpu_sample", None), processes)
    if chosen is None:  # OMP_NUM_THREADS, or nothing measured: torch's own choice
        return runtime, None
    most = torch.get_num_threads()  # (torch counts physical cores only)
    chosen = min(chosen, most)
    torch.set_num_threads(chosen)  # (with workers, this process is one of them)
    return dataclasses.replace(runtime, threads=chosen), cores.Pacer(most, processes)


@contextlib.contextmanager
def stopping_on_signals(stop):
    """SIGINT and SIGTERM set `stop` (a checkpoint follows after the step); a second aborts."""

    def handle(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Progress:
    """A run's terminal output: a progress bar within an epoch (on a terminal), a line after."""

    def __init__(self, runtime: Runtime, config):
        self.config, self.bar = config, None
        # The bar shows the objective being minimised; the epoch line, the plain cross-entropy.
        self.loss_name = "smoothed loss" if config.label_smoothing else "loss"
        if runtime.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=1, unit="sample", unit_scale=True, leave=False)

    def on_batch(self, done, total, loss):
        if self.bar is None:
            return
        samples = total * self.config.batch_size
        if done == 1 or self.bar.total != samples:
            self.bar.reset(total=samples)
        self.bar.update(done * self.config.batch_size - self.bar.n)
        if done % 20 == 0:  # reading the loss waits for the device: not every step
            self.bar.set_postfix({self.loss_name: f"{loss.item():.4f}"}, refresh=False)

    def on_epoch(self, record):
        if self.bar is not None:
            self.bar.clear()
        print(text.epoch_line(record, self.config.epochs), flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
