"""The multi-label human lncRNA set, 5-fold cross-validation over its ``fold`` column: the
README's lncRNA accuracy table.

    python -m benchmarks.accuracy.lncrna ../shared/data/lncrna/lncrna_multilabel_cv.tsv \\
        [--recipe kmer ...] [--folds 0,1] [--runs DIR] [--results DIR] [--readme README.md]

Data: RNALocate v2.0 as prepared by LncLocFormer (CSUBioGroup/LncLocFormer): 729 human lncRNAs
of 119 to 91,671 nt, four compartments (Nucleus, Chromatin, Cytoplasm, Insoluble cytoplasm),
folds 0-4 (its held-out test fold is not included). The sequences are DNA letters, read with
``--alphabet rna`` (T as U). Every recipe trains at full length with ``sublocal train --cv
--multi-label``: fold k tests, fold k+1 validates, the other three train. Each recipe writes
``benchmarks/results/accuracy/lncrna-<recipe>-<date>.json``.

Recipes (sized for the 2-core CI-class CPU):

- ``kmer``: k-mer frequencies (k = 1..3) and logistic regression; seconds per fold.
- ``kmer-heldout``: the same over folds 0-3 with fold 4 held out of every fold (the ensemble
  against its members on unseen data).
- ``qrnn``: the bidirectional QRNN with attention pooling, 64 units (the default 256 runs at
  about 4 sequences per second here), 10 epochs at lr 1e-3; about 5 minutes per fold.
- ``tcn``: the dilated TCN (64 channels, 8 levels), 10 epochs at lr 1e-3; about 4 minutes per fold.

The set's signal is weak at this size: by the labels' mean ROC AUC (the tables' macro AUC, 0.5
for chance) the k-mer floor ranks a little better than chance and neither neural recipe does
(see the README's table), so the thresholded figures mostly follow the labels' frequencies.
"""

from __future__ import annotations

import sys

from benchmarks.accuracy.crossval import DataSet, Recipe, command_line

_ML = ("--multi-label", "--alphabet", "rna")
_NN = ("--epochs", "10", "--lr", "1e-3", "--batch-size", "16", "--max-tokens", "131072", "--test-each-epoch")
RECIPES = {r.name: r for r in (
    Recipe("kmer", _ML + ("--model", "kmer", "--k", "3"), "k-mer (k ≤ 3) + logistic regression"),
    Recipe("kmer-heldout", _ML + ("--model", "kmer", "--k", "3", "--test-partition", "4"),
           "k-mer (k ≤ 3), fold 4 held out of 4 folds"),
    Recipe("qrnn", _ML + ("--model", "qrnn", "--hidden-size", "64") + _NN, "QRNN, 64 units, full length, 10 epochs"),
    Recipe("tcn", _ML + ("--model", "tcn") + _NN, "TCN, 64 channels, full length, 10 epochs"),
)}
ORDER = ["kmer", "kmer-heldout", "qrnn", "tcn"]
SPEC = DataSet("lncrna", RECIPES, ORDER, [], "<!-- lncrna-table:start -->", "<!-- lncrna-table:end -->",
               "python -m benchmarks.accuracy.lncrna ../shared/data/lncrna/lncrna_multilabel_cv.tsv", __doc__)


def main(argv=None) -> int:
    return command_line(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
