"""mnistlab grade: a class's submissions of an otter-grader assignment graded without Docker
(mnistlab.grading), a line per submission as each finishes, and otter's gradebook."""

import math
import sys
from pathlib import Path

from mnistlab.cli.flags import between, command
from mnistlab.errors import ConfigError
from mnistlab.grading import MEMORY, TIME_LIMIT


def add_parsers(commands) -> None:
    grade = command(
        commands,
        "grade",
        "grade a class's notebooks with an otter-grader autograder zip, without Docker",
    )
    grade.add_argument("autograder", type=Path, help="the autograder zip `otter assign` wrote")
    grade.add_argument(
        "submissions",
        nargs="+",
        type=Path,
        metavar="SUBMISSION",
        help="notebooks, submission zips, folders of them, or a class's zip (Canvas, Gradescope)",
    )
    grade.add_argument(
        "--out", type=Path, default=Path("grades"), help="where the gradebook goes (grades/)"
    )
    grade.add_argument(
        "--jobs",
        type=between(1, 256),
        help="submissions graded at once (default: the cores free now)",
    )
    grade.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT,
        metavar="SECONDS",
        help=f"seconds each submission may take; past it, 0 for what never ran "
        f"(default {TIME_LIMIT:g})",
    )
    grade.add_argument(
        "--memory",
        type=float,
        default=MEMORY / 2**30,
        metavar="GIB",
        help=f"GiB each of a submission's processes may take (default {MEMORY / 2**30:g})",
    )
    grade.set_defaults(handler=cmd_grade)


def cmd_grade(args) -> int:
    """Exit 0 when every submission was graded (whatever its score), 1 when one could not be
    (timed out, crashed, not a notebook: scored 0 and named), 2 for a usage mistake."""
    from mnistlab import cores, grading

    try:
        import otter  # noqa: F401
    except ImportError:
        raise ConfigError("grading needs otter-grader: pip install 'mnistlab[grade]'") from None
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ConfigError(f"--time-limit must be a positive number, got {args.time_limit}")
    if not (math.isfinite(args.memory) and args.memory >= 1):
        raise ConfigError(f"--memory must be at least 1 GiB, got {args.memory}")
    if not args.autograder.is_file():
        raise ConfigError(f"{args.autograder}: no such file (otter assign writes the zip)")
    jobs = args.jobs or cores.recommended()

    def on_graded(graded) -> None:
        verdict = graded.error or f"{graded.score:g}/{graded.possible:g}"
        print(f"{graded.name}: {verdict} ({graded.seconds:.1f} s)", flush=True)

    graded = grading.grade(
        args.autograder,
        args.submissions,
        args.out,
        jobs=jobs,
        time_limit=args.time_limit,
        memory=int(args.memory * 2**30),
        on_graded=on_graded,
    )
    failed = [g.name for g in graded if g.error]
    print(
        f"graded {len(graded) - len(failed)} of {len(graded)} submissions, {jobs} at once; "
        f"gradebook: {args.out / 'final_grades.csv'}"
        + (f"; not graded (0): {', '.join(failed)}" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0
