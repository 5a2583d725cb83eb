"""Example 03: train a localization model on your own FASTA file, then predict new sequences.

    python python/03_train_on_your_fasta.py my_proteins.fasta [--epochs 30]
    python python/03_train_on_your_fasta.py            # no file: makes a small SYNTHETIC one

Labels come from DeepLoc-style headers (``>Q9H400 Cell.membrane-M``, a trailing ``test``
marks the test partition); a directory of per-class FASTA files or a TSV/CSV with id,
sequence and label columns works the same way. Sequences are used at full length. This is the
library version of ``sublocal train DATA`` + ``sublocal predict``.
"""

import argparse
import os
import sys
import tempfile

from sublocal_kernels.data import load_records, make_synthetic, write_synthetic
from sublocal_kernels.inference import PredictorSpec, predict
from sublocal_kernels.training import TrainConfig, train


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fasta", nargs="?")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--layers", default="sublocal", choices=["sublocal", "torch"],
                   help="sublocal_kernels.nn layers (default) or the stock torch.nn build, for comparison")
    args = p.parse_args(argv)
    work = args.out or tempfile.mkdtemp(prefix="sublocal-example03-")
    if args.fasta is None:
        # A small synthetic stand-in (7 classes x 40 proteins), so the example runs anywhere.
        fasta, _ = write_synthetic(make_synthetic(n_per_class=40, min_length=50, max_length=200, seed=1), work)
        epochs, model_args = args.epochs or 3, dict(hidden_size=16, attention_size=16, dense_size=32)
    else:
        fasta, epochs, model_args = args.fasta, args.epochs or 30, {}
    model_args["layers"] = args.layers
    records = load_records(fasta)  # errors name the file, line and record of anything malformed
    print(f"{len(records)} sequences, {len({r.label for r in records})} classes, lengths "
          f"{min(map(len, records))}-{max(map(len, records))}")

    cfg = TrainConfig(data=fasta, out=os.path.join(work, "run"), model="alstm", model_args=model_args,
                      epochs=epochs, lr=2e-3, batch_size=32, seed=0, progress=sys.stderr.isatty())
    summary = train(cfg)  # best.{safetensors,json} and last.{safetensors,json} in cfg.out
    print(f"test accuracy of the best checkpoint: {summary['test']['accuracy']:.3f}")

    out_tsv = os.path.join(work, "predictions.tsv")
    # Streams the file in windows, token-budget batches, rows in input order (sublocal predict).
    n = predict(PredictorSpec([os.path.join(cfg.out, "best.json")]), fasta, out_tsv, overwrite=True).rows
    print(f"wrote {n} predictions to {out_tsv}:")
    with open(out_tsv) as fh:
        for line in list(fh)[:4]:
            print("   ", line.rstrip()[:110])


if __name__ == "__main__":
    main()
