"""The ``sublocal`` command line: train, evaluate, predict, plot, bench, demo.

    sublocal train DATA --model alstm --out runs/alstm     # FASTA (DeepLoc headers), directory or TSV/CSV
    sublocal evaluate runs/alstm DATA --split test          # accuracy, per-class MCC/F1, confusion matrix
    sublocal predict runs/alstm proteins.fasta -o out.tsv   # id, prediction, per-class probabilities
    sublocal plot runs/alstm DATA --out plots/              # attention, filter logos, t-SNE (PNG)
    sublocal bench                                          # the op benchmarks on this device
    sublocal demo                                           # synthetic set, A-LSTM on CPU, plots

Multi-GPU or multi-node training: ``torchrun --nproc_per_node N -m sublocal_kernels.cli train ...``
(or ``torchrun ... $(which sublocal) train ...``): DistributedDataParallel, gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "build_parser"]


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _optional_int(text: str):
    return None if text.lower() in ("none", "full", "0") else int(text)


def _add_train(sub):
    p = sub.add_parser("train", help="train a classifier on labelled sequences",
                       description="Train a classifier. DATA: FASTA with DeepLoc headers (>ID Location-M [test]), "
                                   "a directory of per-class FASTA files, or a TSV/CSV with id, sequence, label. "
                                   "Training steps run with subnormal floats flushed to zero (torch.set_flush_denormal).")
    p.add_argument("data")
    p.add_argument("--model", default="alstm", choices=["alstm", "rlstm", "cnnlstm", "qrnn", "tcn"])
    p.add_argument("--out", default="runs/sublocal", help="run directory (checkpoints, summary)")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--alphabet", default="protein", choices=["protein", "nucleotide", "rna", "dna"])
    p.add_argument("--encoding", default="onehot", choices=["onehot", "blosum80", "onehot+blosum80", "embedding"])
    p.add_argument("--features", default=None, help=".npz of per-residue features keyed by record id")
    p.add_argument("--max-length", type=_optional_int, default=None,
                   help="the paper's truncation: keep the first and last MAX_LENGTH/2 residues (default: full length)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (paper: 2e-4)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=None, help="cap on padded residues per batch")
    p.add_argument("--clip-norm", type=float, default=5.0, help="gradient-norm clipping (0: off)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1, help="ignored when records carry a test flag")
    p.add_argument("--seed", type=int, default=0, help="model initialisation, batch order, dropout (and the split)")
    p.add_argument("--split-seed", type=int, default=None, help="the split's own seed (default: --seed)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.json exactly where it stopped")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also write OUT/last every N steps (0: per epoch)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None, help="progress bar (default: on a TTY)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    g = p.add_argument_group("model hyperparameters (defaults: the model's, i.e. the paper's)")
    g.add_argument("--hidden-size", type=int)
    g.add_argument("--num-layers", type=int)
    g.add_argument("--attention-size", type=int)
    g.add_argument("--dense-size", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--conv-dropout", type=float)
    g.add_argument("--widths", type=_int_list, help="conv widths, e.g. 1,3,5,9,15,21")
    g.add_argument("--filters-per-width", type=int)
    g.add_argument("--embedding-dim", type=int)
    g.add_argument("--window", type=int, help="QRNN convolution width")
    g.add_argument("--unidirectional", action="store_true", help="QRNN: one direction only")
    g.add_argument("--pooling", choices=["attention", "mean"])
    g.add_argument("--channels", type=int, help="TCN channels")
    g.add_argument("--num-levels", type=int, help="TCN levels (dilations 1, 2, 4, ...)")
    g.add_argument("--kernel-size", type=int, help="TCN kernel size")
    g.add_argument("--forget-bias", type=float, help="added to the LSTM forget-gate bias at initialisation")
    g.add_argument("--layers", choices=["sublocal", "torch"], help="build from sublocal_kernels.nn (default) or torch.nn")
    p.set_defaults(func=cmd_train)


MODEL_ARGS = ("hidden_size", "num_layers", "attention_size", "dense_size", "dropout", "conv_dropout", "widths",
              "filters_per_width", "embedding_dim", "window", "pooling", "channels", "num_levels", "kernel_size",
              "forget_bias", "layers")


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
                       split_seed=args.split_seed,
                       device=args.device, checkpoint_every=args.checkpoint_every, progress=args.progress)


def cmd_train(args) -> int:
    from .training import train

    summary = train(train_config_from_args(args), resume=args.resume)
    return 0 if summary["history"] or args.resume else 1


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="accuracy, per-class MCC and F1, confusion matrix",
                       description="Evaluate a checkpoint (a run directory means its best checkpoint; several, "
                                   "comma-separated, are an ensemble) on labelled data.")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--features", default=None)
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="evaluate one part of the checkpoint's own split of DATA (default: every record)")
    p.add_argument("--out", default=None, help="directory for report.json, report.txt and confusion.png")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)


def _checkpoint_data(args, ck):
    """The checkpoint's data settings applied to DATA, and the indices of ``--split``."""
    import dataclasses

    import numpy as np

    from .training import TrainConfig, prepare_data

    saved = TrainConfig.from_json(ck.meta["train_config"]) if "train_config" in ck.meta else None
    cfg = dataclasses.replace(saved, data=args.data, format=args.format, features=args.features) if saved else \
        TrainConfig(data=args.data, format=args.format, alphabet=ck.meta["alphabet"], features=args.features,
                    max_length=ck.meta.get("max_length"))
    ds, (tr, va, te) = prepare_data(cfg, classes=ck.classes)
    parts = {"all": np.arange(len(ds)), "train": tr, "val": va, "test": te}
    return ds, parts[getattr(args, "split", "all")]


def cmd_evaluate(args) -> int:
    from .training import classification_report, load_predictor, resolve_device, run_model
    from .training.metrics import confusion_matrix, format_report, plot_confusion

    device = resolve_device(args.device)
    ck = load_predictor(args.checkpoint, device)
    ds, idx = _checkpoint_data(args, ck)
    if len(idx) == 0:
        print(f"no sequences in split {args.split!r}", file=sys.stderr)
        return 1
    probs, loss_sum, n = run_model(ck.model, ds, idx, device, args.batch_size)
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


def _add_predict(sub):
    p = sub.add_parser("predict", help="TSV of id, predicted compartment, per-class probabilities",
                       description="Predict every record of a FASTA file, streaming it in chunks.")
    p.add_argument("checkpoint")
    p.add_argument("fasta")
    p.add_argument("-o", "--out", default="-", help="output TSV (default: standard output)")
    p.add_argument("--features", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=2048, help="records read at a time")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from .training import load_predictor, predict_file, resolve_device

    device = resolve_device(args.device)
    ck = load_predictor(args.checkpoint, device)
    if args.out == "-":
        predict_file(ck, args.fasta, sys.stdout, device, args.batch_size, args.chunk, args.features)
        return 0
    tmp = args.out + ".partial"
    with open(tmp, "w") as fh:
        n = predict_file(ck, args.fasta, fh, device, args.batch_size, args.chunk, args.features)
    os.replace(tmp, args.out)
    print(f"wrote {n} predictions to {args.out}", file=sys.stderr)
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="attention per class, filter logos, t-SNE map (PNG)")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--out", default="plots")
    p.add_argument("--format", default="auto", choices=["auto", "deeploc", "directory", "table"])
    p.add_argument("--features", default=None)
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    p.add_argument("--max-sequences", type=int, default=2000, help="t-SNE and attention over at most this many")
    p.add_argument("--window", type=int, default=100, help="residues shown from each terminus")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    import numpy as np

    from .plots import make_plots
    from .training import load_checkpoint, resolve_device

    device = resolve_device(args.device)
    ck = load_checkpoint(args.checkpoint, device)
    ds, idx = _checkpoint_data(args, ck)
    if len(idx) > args.max_sequences:
        idx = np.sort(np.random.default_rng(args.seed).choice(idx, args.max_sequences, replace=False))
    paths = make_plots(ck.model, ds, idx, args.out, device, args.batch_size, args.window, args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="the op benchmarks on the available device", add_help=False,
                       description="Runs the repository's benchmarks (benchmarks/run.py) on this device; every "
                                   "argument is passed through (sublocal bench --help shows them).")
    p.set_defaults(func=cmd_bench, rest=[])


def cmd_bench(args) -> int:
    import importlib

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for root in (os.getcwd(), here):
        if os.path.isfile(os.path.join(root, "benchmarks", "run.py")):
            sys.path.insert(0, root)
            break
    try:
        run = importlib.import_module("benchmarks.run")
    except ImportError as err:
        print("sublocal bench: the benchmarks live in the repository's benchmarks/ folder, which was not found "
              f"from {os.getcwd()} or {here} ({err}); run it from a source checkout", file=sys.stderr)
        return 2
    return int(run.main(args.rest) or 0)


def _add_demo(sub):
    p = sub.add_parser("demo", help="synthetic set, A-LSTM on CPU, test accuracy, attention on signals, plots")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="a smaller set and fewer epochs (a smoke test)")
    p.add_argument("--layers", choices=["sublocal", "torch"], default=None,
                   help="build the A-LSTM from sublocal_kernels.nn (default) or stock torch.nn layers")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, seed=args.seed, device=args.device, quick=args.quick, progress=args.progress,
             layers=args.layers)
    # The demo is a showcase: it prints whether the targets were met (and records it in
    # demo.json) but succeeds either way; tests/models/test_synthetic_accuracy.py is the gate.
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sublocal", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_predict, _add_plot, _add_bench, _add_demo):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.rest = rest  # sublocal bench passes its arguments through to benchmarks/run.py
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
