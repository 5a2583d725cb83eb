"""What every command's parser shares: the one-line error, the help layout, the exit-status
text, argument types (``--epochs 0`` is a usage error naming the flag) and checks of paths and
devices."""

from __future__ import annotations

import argparse
import math
import os

EXIT_STATUS = """exit status:
  0    success
  1    the data, a file, a checkpoint, the run directory, the device or a missing package
       stopped the command (the message names which)
  2    a flag or argument is wrong (the message names it)
  130  interrupted (Ctrl-C); a training run resumes from its last checkpoint with --resume
  141  standard output was closed early (e.g. piped into head): the rest is not written

Errors are one line, "sublocal COMMAND: error: ..."; --debug also prints the traceback.
Warnings are one line each on standard error, "sublocal COMMAND: warning: ..."."""


class CommandError(Exception):
    """An expected failure: one line on standard error and exit ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps one-paragraph descriptions; keeps the layout of texts with line breaks (the epilogs)."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``sublocal train: error: argument --dropout: ...``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _float_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok or math.isnan(value):
            if high == math.inf and low > -math.inf:
                wanted = f"must be {'>' if low_open else '>='} {low:g}"
            elif high == math.inf:
                wanted = "must be a finite number"
            else:
                wanted = f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{wanted}, got {text}")
        return value
    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)
_fraction = _float_in(0.0, 1.0)


def _max_length(text: str):
    if text.lower() in ("none", "full"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'full', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (the first and last N/2 residues are kept) or "
                                         f"'full', got {value}")
    return value


def _device_name(text: str) -> str:
    """The spelling only (``foo`` is a usage error); whether the device exists is checked later."""
    name = text.strip().lower()
    kind, _, index = name.partition(":")
    if name == "auto" or (kind in ("cpu", "cuda") and (not index or index.isdigit()) and not (kind == "cpu" and index)):
        return name
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def _model_choices(registry, default: str) -> list[str]:
    """The ``--model`` choices: the names in a model registry, the default first (the order
    ``--help`` and the invalid-choice error have always shown)."""
    return [default, *(name for name in registry if name != default)]


def _device(args):
    """``args.device`` as a torch device, or a :class:`CommandError` naming ``--device``."""
    from ..training import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as err:
        raise CommandError(f"--device {args.device}: {err}") from None


def _existing(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise CommandError(f"{what} {path}: no such file or directory")


def _model_error(err: ValueError, model_args) -> CommandError:
    """A model's refusal of its arguments, each ```name``` spelled as its flag (status 2)."""
    message = str(err)
    for name in model_args:
        message = message.replace(f"`{name}`", f"--{name.replace('_', '-')}")
    return CommandError(message, 2)


def _require_plotting() -> None:
    from .._optional import require

    for module in ("matplotlib", "logomaker", "sklearn"):
        require(module, "the plots")


def _command(sub, name: str, help: str, epilog: str = EXIT_STATUS, **kwargs) -> argparse.ArgumentParser:
    """One command's parser, in the command line's help format (its epilog: the exit statuses)."""
    return sub.add_parser(name, help=help, epilog=epilog, formatter_class=_Formatter, **kwargs)


def _require_training(args, fasta: bool) -> None:
    """The optional packages a training command needs (each missing one named with its extra)."""
    from .._optional import require

    require("safetensors.torch", "checkpoints")
    if fasta:
        require("Bio.SeqIO", "reading FASTA")
    if args.progress:
        require("tqdm", "the progress bar (--progress)")


def _add_common(p, device_default: str = "auto") -> None:
    p.add_argument("--device", default=device_default, type=_device_name,
                   help=f"auto, cpu, cuda or cuda:N (default: {device_default})")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, also print the traceback")


def _given(argv: list[str], command_parser, args) -> set[str]:
    """The destinations of the flags given on the command line (not filled in by defaults)."""
    unset = object()
    ns = argparse.Namespace(**{k: unset for k in vars(args)})
    command_parser.parse_known_args(argv, ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def _add_schedule(p, step_epochs: int, gamma: float) -> None:
    """The learning-rate schedule's flags (train and pretrain; :func:`~sublocal_kernels.training.run.learning_rate`)."""
    p.add_argument("--schedule", default="constant", choices=["constant", "step", "cosine"],
                   help="step: times --lr-gamma every --lr-step-epochs epochs; cosine: to 0 over the run")
    p.add_argument("--lr-step-epochs", type=_positive, default=step_epochs)
    p.add_argument("--lr-gamma", type=_float_in(0.0, 1.0, low_open=True, high_open=False), default=gamma)
    p.add_argument("--warmup-steps", type=_non_negative, default=0, help="linear warm-up over this many steps")
