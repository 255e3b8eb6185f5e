"""The helper process that draws a run's pictures agrees with drawing them in-process, and
fails or stops cleanly."""

from pathlib import Path

import pytest
import torch

from mnistlab import data, plots
from mnistlab import train as training
from mnistlab.config import TrainConfig
from mnistlab.painter import Painter, PictureError

NAMES = ["curves.png", "confusion.png", "mistakes.png", "weights.png"]


def picture_data(folder):
    # Undertrained on purpose, so that there are mistakes to show.
    config = TrainConfig(
        dataset="tiny", data_dir=str(folder), hidden=(32,), batch_size=64, epochs=1, lr=1e-4
    )
    tensors = training.prepare(config, data.load("tiny", folder), torch.device("cpu"))
    result = training.train(config, tensors)
    return plots.run_picture_data(result.model, tensors, result.history, result.test_logits)


def test_the_helper_draws_the_same_pictures_as_this_process(tiny, tmp_path):
    content = picture_data(tiny[0])
    assert len(content["mistakes"]) == len(content["mistake_titles"]) > 0
    with Painter() as painter:
        drawn = painter.draw(content, tmp_path / "helper")
    here = plots.draw_run_pictures(content, tmp_path / "here")
    assert [path.name for path in drawn] == [path.name for path in here] == NAMES
    for helper_path, here_path in zip(drawn, here, strict=True):
        assert helper_path.read_bytes() == here_path.read_bytes()
    assert not list((tmp_path / "helper").glob(".*"))  # no temporary files left


def test_a_failing_helper_is_one_line_that_says_how_to_redraw(tmp_path):
    with Painter() as painter, pytest.raises(PictureError) as error:
        painter.draw({}, tmp_path / "run")
    message = str(error.value)
    assert "\n" not in message and "mnistlab plot" in message and "KeyError" in message
    assert not (tmp_path / "run" / "curves.png").exists()


def test_a_painter_that_is_not_used_stops_its_helper():
    painter = Painter()
    painter.close()
    assert painter._process.returncode is not None  # reaped, not left running


def test_without_an_interpreter_to_start_the_pictures_are_drawn_here(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    content = picture_data(tiny[0])
    with Painter() as painter:
        drawn = painter.draw(content, tmp_path / "run")
    assert [path.name for path in drawn] == NAMES and all(path.is_file() for path in drawn)


def test_an_interrupted_save_leaves_no_partial_file(tmp_path):
    class Figure:
        def savefig(self, path):
            Path(path).write_bytes(b"half a picture")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plots._save(Figure(), tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []
