"""Example 04: the convolutional LSTM paper's MultiLoc experiment, given the data directory.

    python python/04_multiloc_paper.py /path/to/multiloc/     # one FASTA file per compartment
    python python/04_multiloc_paper.py --smoke                # a tiny SYNTHETIC stand-in, 1 epoch

The paper's setting: one-hot input truncated to 1000 residues (the first and last 500 kept),
the A-LSTM (conv widths 1, 3, 5, 9, 15, 21 x 10 filters, a bidirectional LSTM of 256 units per
direction, attention 400), Adam at 2e-4, 50% dropout, 100 epochs, and the average of 10 models
trained from different seeds. Each model is trained with the same library calls as
``sublocal train``; the ensemble is evaluated as ``sublocal evaluate run0,run1,...``. The
paper's own numbers are not reproduced here; run it on the data to get them.
"""

import argparse
import os
import tempfile

import numpy as np

from sublocal_kernels.data import make_synthetic
from sublocal_kernels.training import (TrainConfig, classification_report, confusion_matrix, format_report,
                                       load_predictor, prepare_data, run_model, train)


def smoke_directory(root: str) -> str:
    """A MultiLoc-shaped directory (one FASTA per class) of synthetic proteins."""
    data = make_synthetic(n_per_class=12, min_length=60, max_length=1500, seed=2)
    os.makedirs(root, exist_ok=True)
    by_class = {}
    for r in data.records:
        by_class.setdefault(r.label.replace(".", "_").lower(), []).append(r)
    for label, recs in by_class.items():
        with open(os.path.join(root, f"{label}.fasta"), "w") as fh:
            for r in recs:
                fh.write(f">{r.id}\n{r.sequence}\n")
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="directory of per-compartment FASTA files")
    p.add_argument("--models", type=int, default=10, help="ensemble size (paper: 10)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", default="runs/multiloc")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic stand-in, small models, 1 epoch")
    p.add_argument("--layers", default="sublocal", choices=["sublocal", "torch"])
    args = p.parse_args(argv)
    model_args = {"layers": args.layers}
    if args.smoke:
        args.out = tempfile.mkdtemp(prefix="sublocal-example04-")
        args.data = smoke_directory(os.path.join(args.out, "data"))
        args.models, args.epochs = 2, 1
        model_args.update(hidden_size=8, attention_size=8, dense_size=8)
    elif args.data is None:
        p.error("give the MultiLoc data directory, or --smoke")

    runs = []
    for k in range(args.models):
        cfg = TrainConfig(data=args.data, out=os.path.join(args.out, f"run{k}"), model="alstm",
                          model_args=model_args, max_length=1000, epochs=args.epochs, lr=2e-4, batch_size=128,
                          seed=k, split_seed=0, device=args.device)
        # The split has its own seed: every member holds out the same validation and test sets.
        train(cfg)
        runs.append(os.path.join(cfg.out, "best.json"))

    ens = load_predictor(runs)  # the Ensemble averages the members' probabilities
    ds, (_, _, test) = prepare_data(TrainConfig(data=args.data, max_length=1000, split_seed=0))
    probs, _, _ = run_model(ens.model, ds, test, "cpu")
    report = classification_report(confusion_matrix(ds.labels[test], probs.argmax(1), len(ds.classes)), ds.classes)
    print(f"{len(runs)}-model ensemble on the held-out test split:")
    print(format_report(report))
    np.save(os.path.join(args.out, "ensemble_test_probs.npy"), probs)


if __name__ == "__main__":
    main()
