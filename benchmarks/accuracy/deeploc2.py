"""DeepLoc 2.0's Swiss-Prot set, 5-fold cross-validation over its homology partitions: the
README's DeepLoc 2.0 accuracy table.

    python -m benchmarks.accuracy.deeploc2 ../shared/data/deeploc2/swissprot_train_validation.csv \\
        [--recipe kmer ...] [--folds 0,1] [--runs DIR] [--results DIR] [--readme README.md]

Data: Thumuluri et al., "DeepLoc 2.0: multi-label subcellular localization prediction using
protein language models", NAR 50(W1):W228, 2022: 28,303 Swiss-Prot proteins, ten locations,
multi-label, ``Partition`` 0-4. Never copied into the repository. Every recipe trains at full
length (no truncation; batches bounded by --max-tokens) with ``sublocal train --cv
--multi-label``: fold k tests, fold k+1 validates, the other three train. Repeats: the file is
used as published. Each recipe writes ``benchmarks/results/accuracy/deeploc2-<recipe>-<date>.json``
(see :mod:`benchmarks.accuracy.crossval`); ``--readme`` regenerates the table from the newest
file of each recipe.

Recipes, sized to finish a fold within about an hour on the 2-core CI-class CPU:

- ``kmer``: k-mer frequencies (k = 1, 2) and logistic regression; about a minute per fold.
- ``kmer-balanced``: the same with ``--class-weight balanced`` (per-label positive weights).
- ``kmer-heldout``: the same over partitions 0-3 with partition 4 held out of every fold: the fold
  ensemble against each of its members on data none of them saw.
- ``alstm``: the A-LSTM at full length with 64 hidden units per direction (the paper's 256 runs
  at about 36 sequences per second here, some 9 minutes an epoch: 6 epochs an hour), 10 epochs
  at lr 1e-3, with ``--test-each-epoch`` so every selection rule can be compared; about 20
  minutes per fold.
- ``alstm-balanced``: the A-LSTM recipe with ``--class-weight balanced``.
- ``rlstm``: the R-LSTM, the same sizes.
- ``unirep-mlp``: an MLP (32 hidden units, 30 epochs) on UniRep-1900's fusion representation
  (``h_avg || h_final || c_final``, 5,700 numbers per protein) of the published weights, frozen.
  The proteins are embedded once, a partition at a time (``sublocal embed unirep-1900 --pool
  unirep``: about 13 minutes a partition on a quiet machine here, 3,900 residues a second; a
  later sitting embeds only the partitions missing), and kept beside the run directories for
  every recipe that uses them; a fold then takes about 4 minutes (7 s an epoch).
- ``unirep-mlp-balanced``: the same MLP with ``--class-weight balanced`` (per-label positive
  weights): the class-weight measurement on the best model here.
- ``unirep-mlp-heldout``: the same MLP over partitions 0-3 with partition 4 held out of every
  fold: the neural fold ensemble against each of its members on data none of them saw.
- ``unirep-mlp-single``: the same MLP as a single-label classifier of the proteins with one
  location (``--single-label-only``), on the same embeddings: it overfits within its 30 epochs,
  so its selection table is the single-label measurement behind ``--select-by``'s default.
- ``alstm-single``: the A-LSTM recipe on the proteins with one location (its 10 epochs end
  before validation accuracy stops climbing: every selection rule keeps the last epoch).
"""

from __future__ import annotations

import sys

from benchmarks.accuracy.crossval import DataSet, Recipe, command_line

DATASET = "deeploc2"
COMMAND = "python -m benchmarks.accuracy.deeploc2 ../shared/data/deeploc2/swissprot_train_validation.csv"
_ML = ("--multi-label",)
_LSTM = ("--hidden-size", "64", "--epochs", "10", "--lr", "1e-3", "--batch-size", "32", "--max-tokens", "32768",
         "--test-each-epoch")
# The MLP on frozen UniRep-1900 fusion vectors, as every unirep-mlp* recipe trains it.
_MLP = ("--model", "mlp", "--hidden", "32", "--epochs", "30", "--lr", "1e-3", "--batch-size", "64")
RECIPES = {r.name: r for r in (
    Recipe("kmer", _ML + ("--model", "kmer", "--k", "2"), "k-mer (k ≤ 2) + logistic regression"),
    Recipe("kmer-balanced", _ML + ("--model", "kmer", "--k", "2", "--class-weight", "balanced"),
           "k-mer (k ≤ 2) + logistic regression, balanced"),
    Recipe("kmer-heldout", _ML + ("--model", "kmer", "--k", "2", "--test-partition", "4"),
           "k-mer (k ≤ 2), partition 4 held out of 4 folds"),
    Recipe("alstm", _ML + ("--model", "alstm") + _LSTM, "A-LSTM, 64 units, full length, 10 epochs"),
    Recipe("alstm-balanced", _ML + ("--model", "alstm", "--class-weight", "balanced") + _LSTM,
           "A-LSTM, 64 units, full length, 10 epochs, balanced"),
    Recipe("rlstm", _ML + ("--model", "rlstm") + _LSTM, "R-LSTM, 64 units, full length, 10 epochs"),
    Recipe("unirep-mlp", _ML + _MLP + ("--test-each-epoch",),
           "MLP on UniRep-1900 fusion vectors (frozen), 30 epochs", embed=("unirep-1900", "unirep")),
    Recipe("unirep-mlp-balanced", _ML + _MLP + ("--test-each-epoch", "--class-weight", "balanced"),
           "MLP on UniRep-1900 fusion vectors (frozen), 30 epochs, balanced", embed=("unirep-1900", "unirep")),
    Recipe("unirep-mlp-heldout", _ML + _MLP + ("--test-partition", "4"),
           "MLP on UniRep-1900 fusion vectors, partition 4 held out of 4 folds", embed=("unirep-1900", "unirep")),
    Recipe("unirep-mlp-single", ("--single-label-only",) + _MLP + ("--test-each-epoch",),
           "MLP on UniRep-1900 fusion vectors (frozen), 30 epochs, one location per protein",
           embed=("unirep-1900", "unirep")),
    Recipe("alstm-single", ("--single-label-only", "--model", "alstm") + _LSTM,
           "A-LSTM, 64 units, full length, 10 epochs, one location per protein"),
)}
ORDER = ["kmer", "kmer-balanced", "kmer-heldout", "alstm", "alstm-balanced", "rlstm", "unirep-mlp",
         "unirep-mlp-balanced", "unirep-mlp-heldout", "unirep-mlp-single", "alstm-single"]
# DeepLoc 2.0's own cross-validation figures on this set. The paper's tables were not readable
# here; the ProtT5 figures are as quoted from the paper's Table 1 by bivekpok/esm_deeploc
# (DEEPLoc_experiment_report.txt), not checked against the paper. ESM1b's cross-validation
# figures were not found; the same report quotes both models on the paper's HPA test set
# (Table 2), a different set, not available here, so those stay out of the table's rows.
PUBLISHED = [{"name": "DeepLoc 2.0 ProtT5 (Table 1 as quoted by bivekpok/esm_deeploc)",
              "figures": {"micro_f1": "0.73 ± 0.01", "macro_f1": "0.66 ± 0.01", "jaccard": "0.69 ± 0.01",
                          "subset_accuracy": "0.55 ± 0.02"},
              "source": "Thumuluri et al., NAR 2022, Table 1, via github.com/bivekpok/esm_deeploc"},
             {"name": "DeepLoc 2.0 ESM1b", "figures": {},
              "source": "its cross-validation figures were not found in the sources available here (the paper's "
                        "Table 2, as quoted by bivekpok/esm_deeploc, gives ESM1b on the HPA test set, not this "
                        "set: micro F1 0.57 and macro F1 0.44, against ProtT5's 0.60 and 0.46)"}]


SPEC = DataSet(DATASET, RECIPES, ORDER, PUBLISHED, "<!-- deeploc2-table:start -->", "<!-- deeploc2-table:end -->",
               COMMAND, __doc__)


def main(argv=None) -> int:
    return command_line(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
