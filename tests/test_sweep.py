import json
import statistics
from html.parser import HTMLParser

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import run_sweep
from mnistlab import (
    augment,
    checkpoint,
    plots,
    report,
    resident,
    runfiles,
)
from mnistlab import train as training
from mnistlab.cli import main
from mnistlab.config import Runtime, TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.sweep import grids as sweep_plan
from mnistlab.sweep import results as sweep_results
from mnistlab.sweep.pictures import SWEEP_PICTURES


def base_config(folder, **settings):
    settings = {"hidden": (16,), "batch_size": 128, "epochs": 1, **settings}
    return TrainConfig(dataset="tiny", **settings)


def on(folder):
    return Runtime(data_dir=str(folder))


GRID = ["hidden=8,16", "lr=0.003,0.01"]


def test_grid_by_seeds_gives_records_and_a_correct_summary(tiny, tmp_path):
    configs = sweep_plan.plan(base_config(tiny[0]), sweep_plan.parse_grid(GRID), [0, 1])
    records = run_sweep(configs, tmp_path / "s", on(tiny[0]))
    assert len(records) == 8 == len(sweep_results.read_results(tmp_path / "s"))
    rows = sweep_results.summarize(records)
    assert len(rows) == 4 and all(row["n"] == 2 for row in rows)
    for row in rows:
        group = [
            r
            for r in records
            if sweep_results.label(r["config"], ["hidden", "lr"]) == row["config"]
        ]
        accuracies = [r["test_accuracy"] for r in group]
        assert row["accuracy_mean"] == pytest.approx(statistics.fmean(accuracies))
        assert row["accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
        assert row["parameters"] == group[0]["parameters"]
    assert [row["accuracy_mean"] for row in rows] == sorted(
        (row["accuracy_mean"] for row in rows), reverse=True
    )
    assert {row["config"] for row in rows} == {
        "hidden=8 lr=0.003",
        "hidden=8 lr=0.01",
        "hidden=16 lr=0.003",
        "hidden=16 lr=0.01",
    }
    seen = []
    again = run_sweep(
        configs, tmp_path / "s", on(tiny[0]), on_record=lambda r, skipped: seen.append(skipped)
    )
    assert seen == [True] * 8 and again == records
    assert len((tmp_path / "s" / "results.jsonl").read_text().splitlines()) == 8


def test_a_sweep_stopped_mid_run_resumes_to_the_same_records(tiny, tmp_path):
    # Stopped inside its third run (two recorded, the third's checkpoint mid-way), then a crash
    # in the middle of a results line: the next invocation continues the third run from its
    # checkpoint, runs the rest, and gives the records of an uninterrupted sweep.
    configs = sweep_plan.plan(base_config(tiny[0]), sweep_plan.parse_grid(GRID), [0, 1])
    whole = run_sweep(configs, tmp_path / "whole", on(tiny[0]))
    finished, steps = [], {"n": 0}

    def stop():  # asked between steps: three steps into the third run
        steps["n"] += len(finished) >= 2
        return steps["n"] > 3

    partial = run_sweep(
        configs,
        tmp_path / "part",
        on(tiny[0]),
        on_record=lambda r, s: finished.append(r),
        should_stop=stop,
    )
    assert len(partial) == 2
    third = tmp_path / "part" / "runs" / sweep_plan.run_key(configs[2])
    assert checkpoint.load(third)["batch"] == 3
    with open(tmp_path / "part" / "results.jsonl", "a") as handle:
        handle.write('{"key": "cut short by a cra')  # a crash in the middle of a write
    resumed = run_sweep(configs, tmp_path / "part", on(tiny[0]))
    assert [r["key"] for r in resumed] == [r["key"] for r in whole]
    assert [r["test_accuracy"] for r in resumed] == [r["test_accuracy"] for r in whole]
    assert len(sweep_results.read_results(tmp_path / "part")) == 8


def test_parse_grid_and_its_errors():
    assert sweep_plan.parse_grid(["hidden=64,32x32", "activation=tanh"]) == [
        {"hidden": (64,), "activation": "tanh"},
        {"hidden": (32, 32), "activation": "tanh"},
    ]
    assert sweep_plan.parse_grid(["batch-size=64,128"]) == [{"batch_size": 64}, {"batch_size": 128}]
    for bad in (["seed=1,2"], ["colour=red"], ["lr"], ["epochs=one"]):
        with pytest.raises(ConfigError):
            sweep_plan.parse_grid(bad)


def test_presets_build_valid_configs():
    base = TrainConfig()
    for name, preset in sweep_plan.PRESETS.items():
        configs = sweep_plan.plan(base, preset(base), [0])
        assert len(configs) >= 4, name
    depth = sweep_plan.PRESETS["depth"](base)
    assert {"hidden": (500,)} in depth  # the fixed budget at depth 1 is the assignment's MLP
    assert {"model": "logreg"} in sweep_plan.PRESETS["activation"](base)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_width_for_budget_hits_the_budget(depth):
    width = sweep_plan.width_for_budget(depth, 397_510)
    sizes = (784, *(width,) * depth, 10)
    count = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    assert abs(count - 397_510) / 397_510 < 0.01


def test_pareto_frontier():
    rows = [
        {"config": name, "train_flops": flops, "accuracy_mean": accuracy}
        for name, flops, accuracy in [
            ("a", 1, 0.90),
            ("b", 2, 0.95),
            ("c", 3, 0.94),
            ("d", 4, 0.97),
            ("e", 4, 0.96),
        ]
    ]
    assert [
        row["config"] for row in rows if sweep_results.on_frontier(row, rows, "train_flops")
    ] == [
        "a",
        "b",
        "d",
    ]


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(path):
    collector = Collector()
    collector.feed(path.read_text())
    collector.close()
    return collector


def assert_png(path):
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"


def test_sweep_command_pictures_and_report(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--epochs",
            "1",
            "--grid",
            "hidden=8,16",
            "--seeds",
            "0",
            "1",
            "--out",
            str(out),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0 and "[4/4]" in stdout and "| hidden=16" in stdout
    for name in SWEEP_PICTURES:
        assert_png(out / name)
    assert (out / "summary.csv").read_text().startswith("config,n,parameters,train_flops")
    assert main(["report", str(out)]) == 0
    page = parse_html(out / "report.html")
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 3 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    best = sweep_results.summarize(sweep_results.read_results(out))[0]
    assert f"{100 * best['accuracy_mean']:.2f}%" in "".join(page.text)


def test_run_pictures_plot_command_and_report(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--data-dir",
                str(folder),
                "--epochs",
                "2",
                "--hidden",
                "32",
                "--batch-size",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in runfiles.PICTURES:
        assert_png(out / name)
        (out / name).unlink()
    assert main(["plot", str(out)]) == 0  # redraws them from the checkpoint
    for name in runfiles.PICTURES:
        assert_png(out / name)
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 0
    page = parse_html(tmp_path / "r.html")
    accuracy = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["test_accuracy"]
    assert f"{100 * accuracy:.2f}%" in "".join(page.text)
    assert sum(tag == "img" for tag, _ in page.tags) == 4
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_first_layer_picture_of_logistic_regression(tmp_path):
    from mnistlab import models

    model = models.build("logreg")
    assert_png(
        plots.first_layer(dict(model.named_parameters())["output.weight"], tmp_path / "w.png")
    )


@pytest.mark.parametrize("kind", ["shift", "affine", "elastic"])
def test_augmentation_moves_images_but_keeps_them_in_order(kind):
    # Image i holds one bright 4x4 square at a position of its own; after augmentation each
    # output's centre of mass must still be near its own input's.
    count = 12
    images = torch.zeros(count, 28, 28)
    for index in range(count):
        row, column = 4 + 2 * (index % 6), 4 + 8 * (index // 6)
        images[index, row : row + 4, column : column + 4] = 1.0
    x = images.reshape(count, -1)
    moved = augment.apply(x, kind, torch.Generator().manual_seed(0), background=0.0)
    assert moved.shape == x.shape and not torch.equal(moved, x)

    def centre(batch):
        grid = torch.arange(28.0)
        mass = batch.reshape(-1, 28, 28).clamp(min=0)
        total = mass.sum((1, 2))
        return torch.stack(
            [(mass.sum(2) * grid).sum(1) / total, (mass.sum(1) * grid).sum(1) / total], 1
        )

    distance = (centre(moved) - centre(x)).norm(dim=1)
    assert distance.max() < 4.5  # far less than the 8 px between neighbouring squares
    assert augment.apply(x, "none", torch.Generator(), 0.0) is x


def test_the_affine_grid_is_torchs():
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    torchs = F.affine_grid(theta, [5, 1, 28, 28], align_corners=False)
    assert torch.allclose(augment.affine_grid(theta), torchs, atol=1e-6)


def test_augmented_training_leaves_the_datasets_untouched(tiny):
    from mnistlab import data

    folder, _ = tiny
    config = base_config(folder, augment="elastic", epochs=2)
    tensors = resident.prepare(config, data.load("tiny", folder), torch.device("cpu"))
    train_before, test_before = tensors.x_train.clone(), tensors.x_test.clone()
    training.train(config, tensors)
    assert torch.equal(tensors.x_train, train_before)
    assert torch.equal(tensors.x_test, test_before)


def test_a_sweep_folder_reused_with_other_settings_says_so(capsys, tiny, tmp_path):
    common = ["sweep", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--epochs", "1"]
    common += ["--out", str(tmp_path / "s"), "--no-plots"]
    assert main([*common, "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main([*common, "--hidden", "16"]) == 0
    stdout = capsys.readouterr().out
    assert "also holds 1 run of other settings" in stdout
    assert stdout.count("| base") == 1  # this sweep's one configuration, not the other


def test_with_a_validation_split_the_summary_ranks_by_it_and_shows_both(tiny, tmp_path):
    base = base_config(tiny[0], val_split=0.25, epochs=1)
    configs = sweep_plan.plan(base, sweep_plan.parse_grid(["lr=0.0003,0.003,0.03"]), [0])
    rows = sweep_results.summarize(run_sweep(configs, tmp_path / "s", on(tiny[0])))
    assert all(row["val_mean"] is not None for row in rows)
    assert [row["val_mean"] for row in rows] == sorted((r["val_mean"] for r in rows), reverse=True)
    text = sweep_results.markdown(rows)
    assert "| validation accuracy | test accuracy (mean ± std) |" in text
    assert "Ranked by validation accuracy" in text
    sweep_results.write_summary(tmp_path / "s", rows)
    page = report.write(tmp_path / "s").read_text()
    assert "Best by validation accuracy" in page and "<th>validation accuracy</th>" in page


@pytest.mark.parametrize("val_split", [0.0, 0.25])
def test_the_summary_table_has_one_alignment_cell_per_column(tiny, tmp_path, val_split):
    """Markdown renders a table only when the alignment row has as many cells as the header."""
    base = base_config(tiny[0], val_split=val_split, epochs=1)
    rows = sweep_results.summarize(
        run_sweep(sweep_plan.plan(base, [{}], [0, 1]), tmp_path / "s", on(tiny[0]))
    )
    table = [line for line in sweep_results.markdown(rows).splitlines() if line.startswith("|")]
    cells = [line.count("|") - 1 for line in table]
    assert len(table) == 3 and cells == [cells[0]] * 3 and cells[0] == 6 + (val_split > 0)
    assert set(table[1].replace("|", "").split()) == {"---", "---:"}


def test_a_planted_results_link_is_never_followed(tiny, tmp_path):
    from mnistlab.errors import RunError
    from mnistlab.sweep import Sweep

    target = tmp_path / "someone-elses-file"
    target.write_text("precious\n")
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "results.jsonl").symlink_to(target)
    config = base_config(tiny[0], epochs=1)
    with pytest.raises(RunError, match="is a link, not"):
        Sweep(folder).run([config], on(tiny[0]), pictures=False)
    assert target.read_text() == "precious\n"


def test_with_workers_this_process_is_one_of_them(tiny, tmp_path, capsys, idle_workers):
    # --workers 2: one process started beside this one, which takes runs from the queue too
    # (here, that process ends at once, so this one trains all four, printing each)
    out = tmp_path / "shared"
    command = ["sweep", "--dataset", "tiny", "--grid", "hidden=8,16", "--seeds", "0", "1",
               "--epochs", "1", "--out", str(out), "--no-plots", "--data-dir",
               str(tiny[0])]  # fmt: skip
    assert main([*command, "--workers", "2"]) == 0
    assert len(idle_workers) == 1 and idle_workers[0][-2] == "sweep"
    assert capsys.readouterr().out.count("\nrun ") == 4
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len({record["key"] for record in records}) == 4


@pytest.mark.slow
def test_sweep_workers_share_the_runs_each_once(tiny, tmp_path, capfd):
    from mnistlab.cli import main

    out = tmp_path / "shared"
    common = ["sweep", "--dataset", "tiny", "--grid", "hidden=8,16", "--seeds", "0", "1"]
    common += ["--epochs", "1", "--out", str(out), "--no-plots", "--data-dir", str(tiny[0])]
    assert main([*common, "--workers", "2"]) == 0
    printed = capfd.readouterr().out
    # the workers print their runs; the command the summary of all four
    assert printed.count("\nrun ") + printed.startswith("run ") == 4
    assert "hidden=8" in printed and "hidden=16" in printed
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and len({record["key"] for record in records}) == 4
    assert len(list((out / "runs").iterdir())) == 4 and (out / "summary.md").is_file()
    # Run again: nothing is trained twice.
    assert main([*common, "--workers", "2"]) == 0
    assert "\nrun " not in capfd.readouterr().out
    for workers in ("0", "65"):
        assert main([*common, "--workers", workers]) == 2
        assert "workers: 1 to 64 processes" in capfd.readouterr().err
