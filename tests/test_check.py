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
