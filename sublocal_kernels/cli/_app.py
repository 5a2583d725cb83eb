"""The dispatcher: one parser with a subcommand per command (each command's module adds its
own), and the one way every command fails: a line on standard error and the exit status
documented in :data:`EXIT_STATUS`."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from . import demo, lm, predict, train
from ._args import EXIT_STATUS, CommandError, _Formatter, _given, _Parser


def build_parser() -> argparse.ArgumentParser:
    usage = sys.modules[__package__].__doc__  # the package's: its first paragraph describes the command
    parser = _Parser(prog="sublocal", description=usage.split("\n\n")[0].replace("``", ""), epilog=EXIT_STATUS,
                     formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (train.add_train, train.add_evaluate, predict.add_predict, train.add_plot, demo.add_demo,
                lm.add_pretrain, lm.add_embed, lm.add_export_unirep, lm.add_probe):
        add(sub)
    parser.commands = sub.choices
    return parser


# Failures the commands expect (bad data, files, checkpoints, devices, run directories, missing
# packages): one line, status 1. Anything else is a bug and keeps its traceback.
EXPECTED = (ValueError, OSError, EOFError, ImportError)


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _show_warning(prog: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {_one_line(message) if isinstance(message, Warning) else message}",
              file=sys.stderr, flush=True)
    return show


def _stdout_closed() -> int:
    """Standard output's reader went away (``sublocal predict ... | head``): stop quietly, as a
    Unix tool killed by SIGPIPE would, without Python's "Exception ignored" message at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in-process)
        pass
    return 128 + 13  # 128 + SIGPIPE, the status a shell reports for a tool killed by it


def _leave_process_group() -> None:
    """Destroy the process group a torchrun rank joined, while the interpreter is still whole.
    Left to interpreter shutdown, gloo's worker threads can outlive it and abort the process
    ("terminate called without an active exception", SIGABRT) after a run that succeeded."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:  # reported by the command's own parser: "sublocal train: error: ..."
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in ("train", "pretrain"):
        at = argv.index(args.command)
        args.given = _given(argv[at + 1:], parser.commands[args.command], args)
    prog = f"sublocal {args.command}"
    # Under torchrun every rank runs this; only rank 0 reports warnings.
    quiet = int(os.environ.get("RANK", "0")) != 0
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _show_warning(prog)
        try:
            return args.func(args)
        except BrokenPipeError:
            return _stdout_closed()
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except (CommandError, *EXPECTED) as err:
            if args.debug:
                traceback.print_exc()
            print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
            return err.status if isinstance(err, CommandError) else 1
        finally:
            _leave_process_group()
