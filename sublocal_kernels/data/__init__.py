"""The data path: FASTA/table readers, alphabets, encodings, batching and the synthetic set.

Typical use::

    from sublocal_kernels import data
    records = data.load_records("deeploc.fasta")                  # labels from the headers
    ds = data.SequenceDataset(records, alphabet="protein")        # full length (no truncation)
    train, val, test = data.stratified_split(ds.labels, (0.8, 0.1, 0.1), seed=0)
    sampler = data.LengthBucketSampler(ds.lengths[train], batch_size=32, seed=0)
    for idx in sampler:
        batch = data.collate(ds, train[idx])                       # tokens (B, T), lengths (B,)
"""

from .alphabets import AMINO_ACIDS, NUCLEOTIDE, NUCLEOTIDES, PROTEIN, Alphabet, SequenceError, get_alphabet
from .dataset import (Batch, FeatureView, LengthBucketSampler, SequenceDataset, collate, kept_positions, load_features,
                      stratified_split, truncate_middle)
from .embeddings import EmbeddingReader, EmbeddingWriter, open_embeddings
from .encodings import ENCODINGS, ResidueEncoder, blosum80_table, encoding_table, onehot_table
from .readers import (DataFormatError, DataWarning, Record, detect_format, iter_fasta, load_records, open_text,
                      read_deeploc, read_directory, read_fasta, read_table)
from .synthetic import (SYNTHETIC_CLASSES, SyntheticSet, attention_near_signal, make_multilabel_synthetic,
                        make_synthetic, near_signal_fraction, read_signals, write_synthetic)

__all__ = [
    "AMINO_ACIDS", "NUCLEOTIDES", "PROTEIN", "NUCLEOTIDE", "Alphabet", "SequenceError", "get_alphabet",
    "Batch", "FeatureView", "LengthBucketSampler", "SequenceDataset", "collate", "kept_positions", "load_features",
    "stratified_split", "truncate_middle",
    "EmbeddingReader", "EmbeddingWriter", "open_embeddings",
    "ENCODINGS", "ResidueEncoder", "blosum80_table", "encoding_table", "onehot_table",
    "DataFormatError", "DataWarning", "Record", "detect_format", "open_text", "iter_fasta", "load_records", "read_deeploc", "read_directory",
    "read_fasta", "read_table",
    "SYNTHETIC_CLASSES", "SyntheticSet", "attention_near_signal", "make_multilabel_synthetic", "make_synthetic", "near_signal_fraction",
    "read_signals", "write_synthetic",
]
