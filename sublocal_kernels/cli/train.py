"""``sublocal train``, ``evaluate`` and ``plot``: a classifier's run, its scores and its pictures."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings

from ._args import (EXIT_STATUS, CommandError, _add_common, _add_schedule, _command, _device, _existing, _float_in, _fraction,
                    _int_at_least, _int_list, _max_length, _model_choices, _model_error, _non_negative, _positive,
                    _require_plotting, _require_training)


def add_train(sub):
    from ..models import MODELS
    from ..training.config import DEFAULT_SELECT_BY
    from ..training.metrics import SELECT_BY

    p = _command(sub, "train", help="train a classifier on labelled sequences", epilog=TRAIN_EPILOG,
                 description="Train a classifier. DATA: FASTA with DeepLoc headers (>ID Location-M [test]), "
                             "a directory of per-class FASTA files, or a TSV/CSV with id, sequence, label "
                             "(any of them gzipped; with --multi-label a label may be 'A;B', or a table may "
                             "have one 0/1 column per class, as DeepLoc 2.0's CSV). Training steps run with subnormal floats flushed to zero "
                             "(torch.set_flush_denormal).")
    p.add_argument("data")
    p.add_argument("--model", default="alstm", choices=_model_choices(MODELS, "alstm"),
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
    p.add_argument("--single-label-only", action="store_true",
                   help="read multi-label data (as DeepLoc 2.0's) as single-label, keeping only the records with "
                        "exactly one label (how many are left out is printed); evaluate reads DATA the same way")
    p.add_argument("--val-partition", default=None,
                   help="with an integer partition column (predefined folds, as DeepLoc 2.0's Partition): the fold "
                        "that validates (default: the lowest); the others train")
    cv = p.add_argument_group("cross-validation (see 'cross-validation' below)")
    cv.add_argument("--cv", action="store_true",
                    help="one model per held-out fold (the partition column's folds, DeepLoc 2.0's Partition or a "
                         "'fold' column; else --folds stratified folds), saved in OUT/fold-K and as one ensemble "
                         "checkpoint, OUT/ensemble")
    cv.add_argument("--test-partition", default=None,
                    help="hold this partition out of training and of every fold, as the test set (with --cv the "
                         "fold ensemble and each fold model are scored on it)")
    cv.add_argument("--only-folds", type=_name_list, default=None, metavar="NAME,...",
                    help="train only these folds now (the others later with --resume; the ensemble and cv.json "
                         "cover the folds trained so far)")
    cv.add_argument("--folds", type=_int_at_least(3), default=5,
                    help="--cv without a partition column: this many stratified folds (default 5)")
    p.add_argument("--max-length", type=_max_length, default=None,
                   help="the paper's truncation: keep the first and last MAX_LENGTH/2 residues (at least 2; "
                        "default 'full': the whole sequence)")
    p.add_argument("--epochs", type=_positive, default=100)
    p.add_argument("--lr", type=_float_in(0.0, low_open=True), default=2e-4, help="Adam learning rate (paper: 2e-4)")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--max-tokens", type=_positive, default=None, help="cap on padded residues per batch")
    p.add_argument("--clip-norm", type=_float_in(0.0), default=5.0, help="gradient-norm clipping (0: off)")
    p.add_argument("--weight-decay", type=_float_in(0.0), default=0.0)
    _add_schedule(p, 10, 0.5)
    p.add_argument("--select-by", default=None, choices=list(SELECT_BY),
                   help="the validation figure that picks the best checkpoint (loss: the lowest; the others: the "
                        f"highest, ties to the lower loss). Default: {DEFAULT_SELECT_BY[False]} for single-label data, "
                        f"{DEFAULT_SELECT_BY[True]} for multi-label (measured on DeepLoc 2.0, its single-location "
                        "proteins for single-label, and the lncRNA set: README, 'Accuracy'). jaccard and "
                        "macro-auc (the labels' mean ROC AUC) are multi-label only. The last epoch is kept too "
                        "(OUT/last)")
    p.add_argument("--patience", type=_non_negative, default=0,
                   help="stop after this many epochs without a gain in the --select-by figure (0: never)")
    p.add_argument("--class-weight", default=None, metavar="balanced|FILE",
                   help="weigh the loss against class imbalance: 'balanced' (n / (K n_class) from the training "
                        "split; multi-label: each label's positive weight n_negative / n_positive) or a file of "
                        "'CLASS WEIGHT' lines, one per class (multi-label: positive weights)")
    p.add_argument("--threshold-by", default="f1", choices=["f1", "mcc"],
                   help="multi-label: tune each label's threshold on the validation split for its F1 (default) or "
                        "its MCC (DeepLoc 2.0)")
    p.add_argument("--top-one", action="store_true",
                   help="multi-label: a sequence with no label at or above its threshold gets its most probable "
                        "one (DeepLoc 2.0); stored in the checkpoint, so predict and evaluate follow it")
    p.add_argument("--test-each-epoch", action="store_true",
                   help="also score the test split at every epoch's end (summary history; for measuring "
                        "selection rules, never used to select)")
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
    g.add_argument("--k", type=_positive, help="kmer: count every k-mer of length 1..K (default: 2 for proteins, 3 for nucleotides, "
                                                "measured on DeepLoc 2.0 and the lncRNA set)")
    p.set_defaults(func=cmd_train)


TRAIN_EPILOG = """cross-validation (--cv):
  Fold K tests, the next fold validates and the rest train; each fold is a run of its own in
  OUT/fold-K (--resume continues each where it stopped, and skips finished ones). Under torchrun
  the ranks take different folds. At the end the best checkpoints of the folds are saved as one
  ensemble, OUT/ensemble (predict and evaluate take OUT or OUT/ensemble), which averages their
  probabilities; multi-label thresholds are tuned on the out-of-fold predictions (every record
  predicted by the model that did not train on it). OUT/cv.json holds every fold's test figures,
  their mean and standard deviation, and the out-of-fold figures; OUT/oof.tsv the out-of-fold
  probabilities. Records flagged test (DeepLoc headers, partition 'test') belong to no fold:
  the ensemble and every fold model are scored on them.

resuming:
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
              "forget_bias", "hidden", "layers", "standardize", "k")


def _name_list(text: str) -> list[str]:
    import argparse

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold names, got {text!r}")
    return names


def train_config_from_args(args):
    from ..training import TrainConfig
    from ..training.config import default_select_by

    model_args = {k: getattr(args, k) for k in MODEL_ARGS if getattr(args, k, None) is not None}
    if getattr(args, "unidirectional", False):
        model_args["bidirectional"] = False
    alphabet = "nucleotide" if args.alphabet in ("rna", "dna") else args.alphabet
    return TrainConfig(data=args.data, out=args.out, model=args.model, model_args=model_args, format=args.format,
                       alphabet=alphabet, encoding=args.encoding, features=args.features, max_length=args.max_length,
                       epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_tokens=args.max_tokens,
                       clip_norm=args.clip_norm or None, weight_decay=args.weight_decay,
                       val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                       split_seed=args.split_seed, multi_label=args.multi_label,
                       single_label_only=args.single_label_only, val_partition=args.val_partition,
                       device=args.device, checkpoint_every=args.checkpoint_every, progress=args.progress,
                       select_by=args.select_by or default_select_by(args.multi_label), patience=args.patience, schedule=args.schedule,
                       lr_step_epochs=args.lr_step_epochs, lr_gamma=args.lr_gamma, warmup_steps=args.warmup_steps,
                       class_weight=args.class_weight, threshold_by=args.threshold_by, top_one=args.top_one,
                       folds=args.folds, test_each_epoch=args.test_each_epoch,
                       test_partition=args.test_partition, only_folds=args.only_folds)


def _model_flags_fit(args, cfg) -> None:
    """Build the model once, before any data is read, so a hyperparameter the model rejects
    (or does not take) is reported against its flag."""
    from ..models import build_model
    from ..training.trainer import model_inputs

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
        raise _model_error(err, cfg.model_args) from None


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
    from ..data import detect_format
    from ..training import train
    from ..training.overrides import resume_config

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
    cfg = train_config_from_args(args)
    if args.resume:
        # The checkpoint's settings, with the flags given here on top (train refuses the ones a
        # resume may not change).
        cfg = resume_config(cfg, args.given, "train_config")
        if "only_folds" not in args.given:
            cfg = dataclasses.replace(cfg, only_folds=None)  # a plain --resume trains every fold left
    if args.cv and not cfg.cv and args.resume and os.path.isfile(os.path.join(cfg.out, "last.json")):
        raise CommandError(f"--cv --resume: {cfg.out} holds a run without --cv (resume it without --cv)", 2)
    if cfg.cv and cfg.cv_fold is None and args.resume:
        args.cv = True  # the saved run was a cross-validation (a fold's own directory resumes as a run)
    from ..training.trainer import check_config

    try:
        check_config(cfg)
    except ValueError as err:
        raise CommandError(str(err), 2) from None
    _model_flags_fit(args, cfg)
    _device(args)
    _require_training(args, fasta=(detect_format(args.data) if args.format == "auto" else args.format) != "table")
    if args.model == "kmer":
        from .._optional import require

        require("sklearn.linear_model", "the k-mer baseline (--model kmer)")
    if args.cv and args.val_partition is not None:
        raise CommandError("--val-partition does not apply to --cv: each fold is validated by the next one", 2)
    if args.only_folds and not args.cv:
        raise CommandError("--only-folds applies to --cv runs only", 2)
    if args.cv:
        from ..training.crossval import cross_validate

        cross_validate(cfg, resume=args.resume, overwrite=args.overwrite)
    else:
        train(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def add_evaluate(sub):
    p = _command(sub, "evaluate", help="accuracy, per-class MCC and F1, confusion matrix (multi-label: micro/macro F1, "
                                       "Jaccard, subset accuracy, per-class MCC)",
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

    from ..data.readers import DataFormatError, SeveralLabelsError
    from ..training import TrainConfig, prepare_data

    if "cv" in ck.meta and getattr(args, "split", "all") != "all":
        raise CommandError(f"--split {args.split}: {args.checkpoint} is a cross-validation's fold ensemble, whose "
                           "members together trained on every fold: its split figures would be in-sample (see "
                           "cv.json for the out-of-fold ones; evaluate it on other data with --split all)", 2)
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
    from ..models import feature_kind

    width = int(ck.meta.get("num_features", 0) or 0)
    if width and args.features is None:
        kind = feature_kind(ck.meta)
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
    from .._optional import require
    from ..training import classification_report, load_predictor, run_model
    from ..training.metrics import confusion_matrix, format_report, plot_confusion

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
        from ..training.metrics import format_multilabel_report, multilabel_report, plot_multilabel_confusion

        report = multilabel_report(ds.targets[idx], probs, _ensemble_thresholds(ck, ds, parts["val"], device, args),
                                   ds.classes, bool(ck.meta.get("top_one")))
        plot_confusion = plot_multilabel_confusion
        format_report = format_multilabel_report
    else:
        report = classification_report(confusion_matrix(ds.labels[idx], probs.argmax(1), len(ds.classes)), ds.classes)
    report["loss"] = float(loss_sum) / n
    text = format_report(report)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        from ..training.run import _json_ready

        with open(os.path.join(args.out, "report.json"), "w") as fh:
            json.dump(_json_ready(report), fh, indent=1)  # strict JSON: an undefined AUC is null
        with open(os.path.join(args.out, "report.txt"), "w") as fh:
            fh.write(text + "\n")
        print(f"wrote {plot_confusion(report, os.path.join(args.out, 'confusion.png'))}")
    return 0


def _ensemble_thresholds(ck, ds, val, device, args) -> list[float]:
    """A multi-label checkpoint's thresholds; for an ensemble, tuned on its own predictions for
    the validation split of DATA (each class to its best F1), falling back to the mean of the
    members' thresholds where a class has no validation positive."""
    from ..training import run_model
    from ..training.metrics import tune_thresholds

    if "ensemble" not in ck.meta:
        return ck.meta["thresholds"]
    if len(val) == 0:
        warnings.warn(f"{args.data}: no validation split to tune the ensemble's thresholds on: using the mean of its "
                      "members' thresholds", UserWarning, stacklevel=2)
        return ck.meta["thresholds"]
    probs, _, _ = run_model(ck.model, ds, val, device, args.batch_size)
    tuned, untuned = tune_thresholds(ds.targets[val], probs, ds.classes, by=ck.meta.get("threshold_by", "f1"))
    if untuned:
        warnings.warn(f"{args.data}: no positive sequence in the validation split for {', '.join(map(repr, untuned))}: "
                      "those classes keep the mean of the members' thresholds", UserWarning, stacklevel=2)
    mean = ck.meta["thresholds"]
    return [mean[k] if c in untuned else tuned[k] for k, c in enumerate(ds.classes)]


def add_plot(sub):
    p = _command(sub, "plot", help="attention per class, filter logos, t-SNE map (PNG)")
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

    from ..plots import make_plots
    from ..training import load_checkpoint

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


