"""The command line: parse -> config and runtime -> one library call -> print.

The only code that prints, draws progress bars, handles signals or sets torch's thread count.
One module per command group holds its parsers and its handlers (train, data, sweep, tune,
model, report); flags.py builds flags from the settings dataclasses, console.py holds the
terminal side; the tables they print are written in mnistlab.text.
"""

import gc
import logging
import os
import sys

from mnistlab.errors import MnistlabError
from mnistlab.text import escaped

GROUPS = ("data", "train", "sweep", "tune", "model", "grade", "report")


def build_parser():
    """The parser of every command, each group's from its module; each sets its handler."""
    from importlib import import_module

    from mnistlab import meta
    from mnistlab.cli.flags import Parser

    parser = Parser(prog="mnistlab", description="Train MLPs and logistic regression on MNIST.")
    parser.add_argument("--version", action="version", version=f"mnistlab {meta.version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        import_module(f"mnistlab.cli.{group}").add_parsers(commands)
    return parser


def _message(error: MnistlabError) -> str:
    """The library marks the settings its messages name (`lr must be ...`); the command line
    writes each as its flag. The headline is one line, each detail a line of its own."""
    from mnistlab.cli.flags import flag

    return "\n".join(map(escaped, error.render(flag)))


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (tests and tools replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Format(logging.Formatter):
    def format(self, record) -> str:
        warning = "warning: " if record.levelno >= logging.WARNING else ""
        return f"mnistlab: {warning}{record.getMessage()}"


def _show_library_messages() -> None:
    """The library speaks through logging: its warnings (a rebuilt cache, a skipped result
    line) and what it is about to do at length (a download, and where to) reach stderr."""
    logger = logging.getLogger("mnistlab")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(_Format())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None, parser=None) -> int:
    """One command: its status. `parser`, from build_parser(), lets a caller that runs many
    commands in one process build it once (it holds no state between commands)."""
    from mnistlab import cores, environment

    since = cores.sample()  # how busy the cores are while this command starts: see cores.py
    _show_library_messages()
    # The one place a command reads the MNISTLAB_* variables: the library takes their values.
    found = environment.read()
    environment.use(found)
    parser = parser or build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already reported in one line
        return exit.code
    args.cpu_sample, args.environment = since, found
    try:
        return args.handler(args)
    except MnistlabError as error:
        print(f"mnistlab: error: {_message(error)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("mnistlab: aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`mnistlab ... | head`): stop quietly
        # Python flushes stdout again at exit; point it at devnull so that does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe
    except OSError as error:  # a file system that refuses: read-only, full, not permitted
        where = f"{error.filename}: " if error.filename else ""
        print(f"mnistlab: error: {escaped(where + str(error.strerror or error))}", file=sys.stderr)
        return 1


def run() -> None:
    """The `mnistlab` command: main(), then exit."""
    status = main()
    # The process ends here. Python's last garbage collections would walk every object that
    # torch and matplotlib made (about 0.5 s on a 2-core machine) only to free memory the OS
    # reclaims anyway; frozen objects are skipped. Every file was closed before this point.
    gc.freeze()
    sys.exit(status)
