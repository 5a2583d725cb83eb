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

One module per command group: :mod:`.train` (train, evaluate, plot), :mod:`.predict`,
:mod:`.lm` (pretrain, embed, export-unirep, probe) and :mod:`.demo`; :mod:`._args` holds what
their parsers share and :mod:`._app` the dispatcher (:func:`main`, errors and exit statuses).
"""

from ._app import EXPECTED, build_parser, main  # noqa: F401 (EXPECTED: re-exported)
# Also importable from here, as from the single module the command line once was.
from ._args import EXIT_STATUS, CommandError  # noqa: F401
from .lm import pretrain_config_from_args  # noqa: F401
from .train import MODEL_ARGS, train_config_from_args  # noqa: F401

__all__ = ["main", "build_parser"]
