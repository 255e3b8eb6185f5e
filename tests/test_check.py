"""`mnistlab check` names each mistake of a folder of user-style models, and passes a correct
one; exit 0, 1 or 2 as an autograder needs."""

import json
from pathlib import Path

import pytest
import torch

from mnistlab import data, diagnose, usercode
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
    assert len(captured.err) < 2 * usercode.MAX_OUTPUT + 10_000  # the flood cut, not held
    assert time.monotonic() - started < 60  # no lingering thread or child became a timeout
