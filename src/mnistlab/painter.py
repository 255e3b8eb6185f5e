"""A run's pictures, drawn by a helper process that starts with the run.

Importing matplotlib takes about 0.7 s on a 2-core machine. Started first thing in
`mnistlab train`, the helper spends that time on the core left idle while the main process
imports torch and loads the data, then waits. When training ends it receives what the
pictures show (plain lists and numpy arrays, pickled over its stdin), draws them, and prints
the paths it wrote. The main process never imports matplotlib.
"""

import pickle
import subprocess
import sys
from pathlib import Path

from mnistlab.errors import MnistlabError


class PictureError(MnistlabError):
    """The pictures could not be drawn; the run itself is saved."""


class Painter:
    """The helper process: `draw(picture_data, folder)` once, or `close()` to let it go."""

    def __init__(self):
        self._folder: Path | None = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mnistlab.painter"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError:  # no interpreter to start (an embedded Python): draw in-process
            self._process = None

    def draw(self, picture_data: dict, folder) -> list[Path]:
        """Have the helper draw `plots.draw_run_pictures(picture_data, folder)`; wait for it."""
        if self._process is None:
            from mnistlab import plots

            return plots.draw_run_pictures(picture_data, folder)
        self._folder = Path(folder)
        payload = pickle.dumps((picture_data, str(folder)), protocol=pickle.HIGHEST_PROTOCOL)
        # A helper that died early (its stderr says why) leaves a broken pipe, which
        # communicate() ignores.
        out, err = self._process.communicate(payload)
        if self._process.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else f"the helper exited with {self._process.returncode}"
            raise PictureError(
                f"could not draw the run pictures ({reason}); the run is saved: "
                f"draw them with 'mnistlab plot {folder}'"
            )
        return [Path(line) for line in out.decode().splitlines()]

    def close(self) -> None:
        """Stop the helper if it is still waiting (the run failed or was interrupted)."""
        if self._process is None:
            return
        killed = self._process.poll() is None
        if killed:
            self._process.kill()
        self._process.communicate()  # reap it and close the pipes
        if killed and self._folder is not None:  # stopped while drawing: no partial files
            for partial in self._folder.glob(f".*.{self._process.pid}.tmp.png"):
                partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve() -> None:
    import gc

    # The point of the helper: these imports happen now, while the main process is busy.
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.ticker  # noqa: F401

    from mnistlab import plots

    try:
        picture_data, folder = pickle.load(sys.stdin.buffer)  # waits for the end of training
    except EOFError:  # the run ended without pictures
        return
    for path in plots.draw_run_pictures(picture_data, folder):
        print(path)
    sys.stdout.flush()
    gc.freeze()  # as in cli.run: no final collection over matplotlib's objects


if __name__ == "__main__":
    _serve()
