"""The companion notebook runs top to bottom through a real Jupyter kernel on the real MNIST
files, asserting its own key results; in git it carries no outputs."""

import json
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "assignment.ipynb"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code, "the notebook has code cells"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:60]


@pytest.mark.realdata
def test_the_notebook_runs_top_to_bottom_on_mnist(real_data, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    started = time.perf_counter()
    client.execute()  # a failing cell or assert raises CellExecutionError
    # Its time is printed, not asserted: the machines are shared (a figure, not a test).
    seconds = time.perf_counter() - started
    print(f"notebook executed in {seconds:.0f} s")
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "MLP 784-500-10: 397,510" in text and "logistic regression 784-10: 7,850" in text
    assert "W1 is not a leaf tensor" in text and "all checks passed" in text
    assert (tmp_path / "runs" / "default" / "curves.png").is_file()


def test_the_api_a_notebook_calls_leaves_global_state_alone(tiny, tmp_path):
    import torch

    import mnistlab

    torch.manual_seed(7)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    dataset = mnistlab.load_data("tiny", tiny[0])
    run = mnistlab.fit(
        dataset="tiny",
        hidden=(16,),
        epochs=1,
        folder=tmp_path / "run",
        data_dir=tiny[0],
        progress=False,
        pictures=False,
    )
    evaluation = mnistlab.evaluate_run(run, data_dir=tiny[0])
    assert evaluation.accuracy == pytest.approx(run.history[-1]["test_accuracy"])
    assert len(dataset.train) == 512
    assert mnistlab.count_parameters(mnistlab.build_model("logreg")) == 7_850
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    # The run was released: another process (or this one) may use its folder.
    with mnistlab.runs.Run.open(tmp_path / "run", {"epochs": 2}):
        pass
