"""`mnistlab check` names each mistake of a folder of user-style models, and passes a correct
one; exit 0, 1 or 2 as an autograder needs."""

import json
import sys
from pathlib import Path

import pytest
import torch

from mnistlab import confined, data, diagnose, usercode
from mnistlab.cli import main
from mnistlab.runfiles import plain
from mnistlab.text import check_report

MODELS = Path(__file__).parent / "user_models"


@pytest.mark.parametrize(
    ("target", "failed", "says"),
    [
        ("correct.py:BasicMLP", set(), "all checks passed"),
        (
            "assignment_basic.py:BasicMLP",
            {"leaf", "overfit"},
            "W1 is not a leaf tensor",
        ),
        ("softmax.py:MLP", {"logits", "overfit"}, "CrossEntropyLoss applies softmax itself"),
        ("frozen.py:MLP", {"leaf"}, "fc1.weight does not require grad"),
        ("unused_layer.py:MLP", {"gradient", "agrees"}, "fc2.weight receives no gradient"),
        ("wrong_output.py:model", {"output"}, "the output is (64, 5), not (64, 10)"),
        ("unscaled.py:BasicMLP", {"initial_loss"}, "far above ln 10"),
        ("wrong_backward.py:MLP", {"gradients"}, "disagrees with finite differences"),
    ],
)
def test_each_mistake_is_named_with_its_fix(tiny, target, failed, says):
    # Each model checked once; its report read as the JSON and the text the command prints.
    torch.manual_seed(0)  # as the command seeds it: the user's model draws from it
    model = usercode.load_target(str(MODELS / target))
    checked = diagnose.check(model, *diagnose.batch(data.load("tiny", tiny[0])))
    report = json.loads(json.dumps(plain(checked.as_dict())))
    assert {f["check"] for f in report["findings"] if f["passed"] is False} == failed
    assert report["passed"] == (not failed)
    assert any(says in f["message"] for f in report["findings"]) or says == "all checks passed"
    assert all(f["fix"] for f in report["findings"] if f["passed"] is False)
    assert says in check_report(checked)


@pytest.mark.parametrize(("target", "code"), [("correct.py:BasicMLP", 0), ("frozen.py:MLP", 1)])
def test_the_command_exits_0_when_every_check_passes_and_1_when_one_fails(
    capsys, tiny, target, code
):
    argv = ["check", str(MODELS / target), "--dataset", "tiny", "--data-dir", str(tiny[0])]
    assert main([*argv, "--json"]) == code
    assert json.loads(capsys.readouterr().out)["passed"] == (code == 0)


def test_the_assignments_mistake_gets_the_fix_and_the_name_mapping(capsys, tiny):
    main(
        [
            "check",
            str(MODELS / "assignment_basic.py:BasicMLP"),
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny[0]),
        ]
    )
    text = capsys.readouterr().out
    assert (
        "fix: create it first, then mark it: W1 = (torch.randn(...) * 0.01).requires_grad_()"
        in text
    )
    assert "W1 -> hidden.0.weight (transposed); b1 -> hidden.0.bias" in text
    assert "397,510 trainable parameters" not in text  # W1 and W2 cannot train
    assert "510 trainable parameters of its 397,510" in text


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere.py:Model", "no such file"),
        ("correct.py", "write FILE.py:NAME"),
        ("correct.py:Missing", "has no Missing; it defines: BasicMLP"),
    ],
)
def test_usage_mistakes_exit_2(capsys, tiny, target, message):
    code = main(["check", str(MODELS / target), "--dataset", "tiny", "--data-dir", str(tiny[0])])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_target_naming_no_python_file_is_refused_before_a_process_starts(monkeypatch):
    # Said at once: no process (and its ~2 s of imports) is started for a typo.
    from mnistlab.errors import ConfigError

    monkeypatch.setattr(confined, "run", lambda *a, **k: pytest.fail("a process was started"))
    for target, message in [
        ("nowhere.py:Model", "no such file"),
        ("correct.py", "write FILE.py:NAME"),
        ("notes.txt:BasicMLP", "not a Python file"),
    ]:
        with pytest.raises(ConfigError, match=message):
            usercode.check_file(str(MODELS / target))


def test_a_checked_file_leaves_no_bytecode_beside_it(tmp_path, monkeypatch):
    # As `python FILE.py` runs a file: nothing written in the student's folder.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # (as Python runs by default)
    (tmp_path / "mine.py").write_text((MODELS / "correct.py").read_text())
    assert usercode.load_target(f"{tmp_path / 'mine.py'}:BasicMLP") is not None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine.py"]
    assert sys.dont_write_bytecode is False


def test_check_leaves_the_model_and_the_global_generator_as_they_were(tiny):
    model = usercode.load_target(str(MODELS / "correct.py:BasicMLP"))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = diagnose.batch(data.load("tiny", tiny[0]))
    state = torch.random.get_rng_state()
    report = diagnose.check(model, x, y)
    assert report.passed
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "check", "says"),
    [
        ("Detached", "gradient", "the output carries no gradient"),
        ("NoGrad", "gradient", "torch.no_grad()"),
        ("Half", "output", "raised RuntimeError"),
        ("NonLeafAttribute", "overfit", "raised RuntimeError"),
        ("Unpicklable", "overfit", "raised TypeError"),
        ("ParametersRaise", "leaf", "forgot to return them"),
        ("ParametersAreFloats", "leaf", "which are not tensors"),
        ("BackwardRaises", "gradient", "backward not written yet"),
        ("SecondCallFails", "gradients", "only works once"),
    ],
)
def test_the_bugs_students_write_are_findings_never_a_crash_of_check(tiny, name, check, says):
    torch.manual_seed(0)
    model = usercode.load_target(f"{MODELS / 'careless.py'}:{name}")
    report = diagnose.check(model, *diagnose.batch(data.load("tiny", tiny[0])))
    assert not report.passed
    failed = [f for f in report.findings if f.passed is False and f.check == check]
    assert failed and any(says in f.message for f in failed), report.as_dict()
    assert "ERROR" in check_report(report) or "FAIL" in check_report(report)


@pytest.mark.slow
def test_a_class_of_files_each_checked_apart_with_a_time_limit(capfd, tiny):
    # One good file among a file that exits, one that hangs, one that prints and one that is
    # not Python: each gets its own answer, the good one passes, nothing stops the rest, and
    # --json stays JSON whatever the files print.
    targets = [
        f"{MODELS / 'exits.py'}:Model",
        f"{MODELS / 'careless.py'}:Sleeps",
        f"{MODELS / 'chatty.py'}:MLP",
        f"{MODELS / 'notes.txt'}:BasicMLP",
        f"{MODELS / 'correct.py'}:BasicMLP",
    ]
    argv = ["check", *targets, "--dataset", "tiny", "--data-dir", str(tiny[0]), "--json"]
    code = main([*argv, "--time-limit", "8"])
    captured = capfd.readouterr()
    reports = {r["target"]: r for r in map(json.loads, captured.out.splitlines())}
    assert code == 2 and len(reports) == 4  # the .txt file: a usage error, on stderr
    assert "exit status 3 before the check was done" in str(reports[targets[0]])
    assert "did not finish within 8 s" in str(reports[targets[1]])
    assert reports[targets[2]]["passed"] and reports[targets[4]]["passed"]
    assert "loading my model" in captured.err and "not a Python file" in captured.err
    assert "Traceback" not in captured.err


CORRECT = (MODELS / "correct.py").read_text()
HOSTILE = {
    # a pass written by the file itself, to where check's report goes
    "forger.py": "import os, sys\nos.write(int(sys.argv[1]), b'{\"findings\": []}')\nos._exit(0)\n",
    # a report channel filled with what is not a report
    "garbler.py": "import os, sys\nos.write(int(sys.argv[1]), b'not json')\n",
    # a child left running, its pid written down for the test to look at
    "forks.py": "import subprocess, sys, os\nchild = subprocess.Popen([sys.executable, '-c', "
    "'while True: pass'])\nopen(os.path.join(os.path.dirname(__file__), 'child.pid'), 'w')"
    ".write(str(child.pid))\n",
    # a thread that never ends, and a child holding the output open
    "lingers.py": "import subprocess, threading, time\nthreading.Thread(target=time.sleep, "
    "args=(600,)).start()\nsubprocess.Popen(['sleep', '600'])\n",
    # 3 GB, past the memory cap
    "greedy.py": "import torch\nhoard = torch.ones(3 * 2**30 // 4)\n",
    # 50 MB of output
    "loud.py": "import sys\nfor _ in range(50):\n    sys.stdout.write('x' * 1_000_000)\n",
}


@pytest.mark.slow
def test_a_file_cannot_pass_by_writing_the_report_nor_outlive_outgrow_or_flood_check(
    capfd, tiny, tmp_path
):
    import os
    import time

    targets = []
    for name, head in HOSTILE.items():
        (tmp_path / name).write_text(head + CORRECT)
        targets.append(f"{tmp_path / name}:BasicMLP")
    argv = ["check", *targets, "--dataset", "tiny", "--data-dir", str(tiny[0]), "--json"]
    started = time.monotonic()
    code = main([*argv, "--time-limit", "60"])
    captured = capfd.readouterr()
    reports = {
        Path(r["target"].split(":")[0]).name: r for r in map(json.loads, captured.out.splitlines())
    }
    assert code in (1, 2) and "Traceback" not in captured.err
    for name in ("forger.py", "garbler.py"):
        assert not reports[name]["passed"], reports[name]
        assert "wrote to the channel" in str(reports[name]), reports[name]
    pid = int((tmp_path / "child.pid").read_text())
    with pytest.raises(ProcessLookupError):  # ended with the check
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    assert reports["forks.py"]["passed"] and reports["lingers.py"]["passed"]
    assert "greedy.py" not in reports or not reports["greedy.py"]["passed"]
    if "greedy.py" not in reports:  # refused as it ran: a one-line error naming it
        assert "greedy.py raised" in captured.err and "allocate memory" in captured.err
    assert reports["loud.py"]["passed"]
    assert len(captured.err) < 2 * confined.MAX_OUTPUT + 10_000  # the flood cut, not held
    assert time.monotonic() - started < 60  # no lingering thread or child became a timeout


def _offline(monkeypatch, tmp_path):
    """No data files anywhere check looks, and no network: every mirror refuses at once."""
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MNISTLAB_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(data, "download", _no_network)


def _no_network(*args, **kwargs):
    raise AssertionError("check tried to download")


def test_check_runs_offline_on_the_sample_and_answers_with_numbers(monkeypatch, tmp_path):
    import mnistlab

    _offline(monkeypatch, tmp_path)
    module = usercode.load_target(str(MODELS / "correct.py:BasicMLP"))
    report = mnistlab.check(type(module))
    answer = json.loads(json.dumps(plain(report.as_dict())))
    assert answer["schema"] == diagnose.SCHEMA == 1
    assert answer["passed"] is True
    values = answer["values"]
    assert values["parameters"] == values["trainable_parameters"] == 397_510
    assert abs(values["initial_loss"] - 2.303) < 0.3
    assert values["overfit_loss"] < 0.05 and 0 < values["overfit_steps"] <= 200
    assert values["agreement_error"] < 1e-5 and values["agreement_activation"] == "relu"
    assert values["gradient_error"] < 1e-4


def test_a_class_checked_in_process_gives_what_the_command_gives(monkeypatch, tmp_path, capsys):
    # The same seed for the weights and the checks (dropout draws included): equal numbers.
    import mnistlab

    _offline(monkeypatch, tmp_path)
    target = str(MODELS / "dropout.py:MLP")
    in_process = mnistlab.check(type(usercode.load_target(target)), time_limit=60).as_dict()
    assert main(["check", target, "--json", "--quiet"]) in (0, 1)
    by_command = json.loads(capsys.readouterr().out)
    assert by_command["values"] == json.loads(json.dumps(plain(in_process["values"])))
    assert by_command["findings"] == json.loads(json.dumps(plain(in_process["findings"])))
    other_seed = mnistlab.check(type(usercode.load_target(target)), seed=1).values
    assert other_seed["initial_loss"] != in_process["values"]["initial_loss"]


def test_only_the_named_checks_run_and_a_wrong_name_is_refused(monkeypatch, tmp_path, capsys):
    import mnistlab

    _offline(monkeypatch, tmp_path)
    model = usercode.load_target(str(MODELS / "softmax.py:MLP"))
    report = mnistlab.check(model, only=["leaf", "logits"])
    assert {f.check for f in report.findings} == {"leaf", "logits"}
    assert report.failed() == ["logits"]
    assert "overfit_loss" not in report.values  # the slow checks not named never ran
    with pytest.raises(ValueError, match="unknown check bogus"):
        mnistlab.check(model, only=["bogus"])
    argv = ["check", str(MODELS / "softmax.py:MLP"), "--only", "leaf,bogus"]
    assert main(argv) == 2
    assert "--only: unknown check 'bogus'" in capsys.readouterr().err


def test_a_forward_that_never_returns_is_stopped_in_process(monkeypatch, tmp_path):
    import time

    import mnistlab

    _offline(monkeypatch, tmp_path)

    class Sleeper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(784, 10)

        def forward(self, x):
            time.sleep(60)
            return self.layer(x)

    started = time.monotonic()
    report = mnistlab.check(Sleeper, time_limit=1.5)
    assert time.monotonic() - started < 20
    assert report.failed() == ["time"] and report.findings[-1].error
    assert "did not finish within 1.5 s" in str(report)


def test_accuracy_uses_the_full_test_set_when_present_else_the_sample(
    monkeypatch, tmp_path, real_data
):
    import mnistlab

    _offline(monkeypatch, tmp_path)
    model = mnistlab.build_model()
    measured = mnistlab.accuracy(model)
    assert (measured.images, measured.source) == (1000, "sample")
    full = mnistlab.accuracy(model, data_dir=real_data / "mnist")
    assert (full.images, full.source) == (10_000, "test set")
    assert 0 <= measured.accuracy <= 1 and 0 <= full.accuracy <= 1


def test_the_shipped_sample_is_the_first_images_of_mnist(real_data):
    from mnistlab import sample

    shipped, full = sample.load(), data.load("mnist", real_data / "mnist")
    for split in ("train", "test"):
        mine, theirs = getattr(shipped, split), getattr(full, split)
        assert len(mine) == sample.SIZE
        assert torch.equal(mine.images, theirs.images[: sample.SIZE])
        assert torch.equal(mine.labels, theirs.labels[: sample.SIZE])
    # so the batch check draws is the same with the full data on the machine or without it
    pairs = zip(diagnose.batch(shipped), diagnose.batch(full), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
