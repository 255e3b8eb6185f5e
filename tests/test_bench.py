import json

import pytest
import torch

from mnistlab import bench, data, devices, models, resident, text
from mnistlab.cli import main
from mnistlab.config import TrainConfig


def test_epoch_flops_count_forward_weight_and_input_gradients():
    # forward 2*N*(784*500 + 500*10), the same again for weight gradients, and the input
    # gradient of the second layer only (the images need none)
    n = 60_000
    forward = 2 * n * (784 * 500 + 500 * 10)
    assert models.epoch_flops((784, 500, 10), n) == 2 * forward + 2 * n * 500 * 10
    assert models.epoch_flops((784, 10), n) == 2 * 2 * n * 784 * 10


def test_notebook_dataset_matches_totensor_and_normalize(tiny):
    folder, _ = tiny
    split = data.load("tiny", folder).train
    x, label = bench.NotebookDataset(split)[3]
    expected = (split.images[3].flatten().float() / 255 - 0.5) / 0.5
    assert torch.allclose(x, expected) and label == int(split.labels[3])


def test_bench_times_every_row(tiny):
    folder, _ = tiny
    config = TrainConfig(dataset="tiny", hidden=(32,), batch_size=64)
    report = bench.run(config, data.load("tiny", folder), torch.device("cpu"))
    names = [row["name"] for row in report["rows"]]
    bf16 = ["bound bf16 (matmuls only)", "module epoch bf16"] if devices.bf16_native() else []
    assert names == [
        "bound (matmuls only)",
        "module epoch",
        "scratch epoch",
        "manual epoch",
        *bf16,
        "notebook pipeline (batch 64)",
    ]
    assert report["rows"][0]["ratio_to_bound"] == 1.0
    # Every time is reported, the best of them in the table; the notebook is timed once.
    assert [len(row["times"]) for row in report["rows"]] == [5] * (4 + len(bf16)) + [1]
    # Where an epoch's time goes, by torch's profiler: every part measured, the matmuls, the
    # batches, the loss and the optimizer among them, and together the whole epoch; for the
    # bf16 epoch too where the CPU has it (auto trains in it there), its casts among them.
    breakdowns = [report["where_time_goes"]]
    if bf16:
        breakdowns.append(report["where_time_goes_bf16"])
        assert breakdowns[1]["copies"] > 0  # (the casts)
    else:
        assert report["where_time_goes_bf16"] is None
    for breakdown in breakdowns:
        parts = dict(breakdown)
        epoch, alike = parts.pop("epoch"), parts.pop("bound's matmuls")
        assert alike > 0  # (the bound's matmuls under the profiler too, to compare alike)
        assert {"matmuls", "batching", "activations", "loss", "optimizer"} <= set(parts)
        assert list(parts)[-1] == "outside operators"
        assert all(seconds > 0 for part, seconds in parts.items() if part != "outside operators")
        assert sum(parts.values()) == pytest.approx(epoch)
    said = text.bench(config, report)
    assert ("where a bf16 module epoch's time goes" in said) == bool(bf16)
    for row in report["rows"]:
        assert row["seconds"] == min(row["times"])
        assert row["seconds"] > 0 and row["samples_per_second"] == pytest.approx(
            512 / row["seconds"]
        )
        assert row["gflops"] == pytest.approx(report["epoch_gflop"] / row["seconds"])


def test_bench_command_json(capsys, tiny):
    folder, _ = tiny
    code = main(
        [
            "bench",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--hidden",
            "16",
            "--impl",
            "module",
            "--no-notebook",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    bf16 = ["bound bf16 (matmuls only)", "module epoch bf16"] if devices.bf16_native() else []
    assert code == 0 and [row["name"] for row in report["rows"]] == [
        "bound (matmuls only)",
        "module epoch",
        *bf16,
    ]


def test_bench_table_shows_how_far_the_slowest_repeat_was_from_the_best(capsys, tiny):
    folder, _ = tiny
    flags = ["--dataset", "tiny", "--data-dir", str(folder), "--hidden", "16", "--impl", "module"]
    assert main(["bench", *flags, "--no-notebook", "--repeats", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-1] == "slowest"
    module = next(line for line in lines if line.startswith("module epoch"))
    assert module.split()[-1].startswith("+") and module.split()[-1].endswith("%")
    assert any(line.startswith("best of 2, taken in turns") for line in lines)
    breakdowns = [line for line in lines if line.startswith("where a ")]
    assert breakdowns[0].startswith("where a module epoch's time goes, by torch's profiler")
    assert lines[-len(breakdowns) :] == breakdowns and len(breakdowns) == 1 + bool(
        devices.bf16_native()
    )


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_keeps_the_dataset_on_the_device(tiny):
    from mnistlab import train as training

    folder, _ = tiny
    config = TrainConfig(dataset="tiny", hidden=(32,), batch_size=64, epochs=2)
    device = devices.resolve("cuda")
    tensors = resident.prepare(config, data.load("tiny", folder), device)
    assert tensors.x_train.is_cuda and tensors.y_train.is_cuda and tensors.x_test.is_cuda
    for impl in ("module", "scratch", "manual"):
        result = training.train(TrainConfig(**{**config.__dict__, "impl": impl}), tensors)
        assert result.history[-1]["test_accuracy"] > 0.9
        assert all(value.is_cuda for _, value in result.model.named_parameters())
        assert result.optimizer.fused  # Adam's single kernel, its state on the device too
        assert all(t.is_cuda for state in result.optimizer.state for t in state.values())


def test_bf16_is_native_only_where_the_cpu_says_so(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("fpu avx2 avx512f", False), ("avx512f avx512_bf16", True),
                          ("avx2 amx_bf16 amx_tile", True)):  # fmt: skip
        cpuinfo.write_text(f"processor : 0\nflags\t\t: {flags}\n")
        assert devices.bf16_native(str(cpuinfo)) is native
    assert devices.bf16_native(str(tmp_path / "none")) is None


def test_bench_says_what_precision_auto_trains_in_here():
    def report(seconds: dict, native):
        rows = [
            {"name": name, "seconds": s, "times": [s], "samples_per_second": 1.0, "gflops": 1.0,
             "ratio_to_bound": 1.0}
            for name, s in seconds.items()
        ]  # fmt: skip
        return {"device": "cpu", "threads": 2, "epoch_gflop": 1.0, "rows": rows,
                "bf16_native": native}  # fmt: skip

    fp32 = {"bound (matmuls only)": 0.6, "module epoch": 0.8}
    pays = {**fp32, "bound bf16 (matmuls only)": 0.4, "module epoch bf16": 0.5}
    said = text.bench(TrainConfig(), report(pays, True))
    assert "1.60x as fast as fp32's; precision auto (the default and best recipes') trains" in said
    assert said.splitlines()[-1].endswith("trains in bf16 here")
    slower = {**fp32, "bound bf16 (matmuls only)": 0.6, "module epoch bf16": 0.78}
    assert "bf16 does not pay here (under 10% faster): give --precision fp32" in text.bench(
        TrainConfig(), report(slower, True)
    )
    said = text.bench(TrainConfig(), report(fp32, False))
    assert "not native on this CPU (no AVX512_BF16 or AMX): precision auto trains in fp32" in said
