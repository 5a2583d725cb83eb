"""Protein language models: ``sublocal pretrain``, ``sublocal embed`` and ``sublocal probe``.

- :mod:`.pretrain`: next-residue pretraining of :class:`~sublocal_kernels.models.ProteinLM` (or
  the :class:`~sublocal_kernels.models.ConvAutoencoder`) over FASTA files of any size, from
  scratch or from given weights (UniRep's: evotuning).
- :mod:`.embed`: per-protein or per-residue embeddings of a FASTA file, written through
  :class:`~sublocal_kernels.data.embeddings.EmbeddingWriter`, from a checkpoint or UniRep's
  published weights.
- :mod:`.probe`: linear probes (ridge or logistic regression) on embeddings, cross-validated or
  on a given train/test split.
"""

from .embed import embed_fasta
from .pretrain import PretrainConfig, learning_rate, pretrain
from .probe import ProbeError, probe

__all__ = ["PretrainConfig", "pretrain", "learning_rate", "embed_fasta", "probe", "ProbeError"]
