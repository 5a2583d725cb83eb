"""Prediction at proteome scale (behind ``sublocal predict``): a FASTA file of any size streamed
in windows of records, token-budget batches, rows in input order as each window completes,
resumable file output, worker processes on CPU, TSV or JSON-lines rows with an optional
attention summary, ensembles in one pass.

    from sublocal_kernels.inference import PredictorSpec, predict
    predict(PredictorSpec(["runs/alstm"]), "proteome.fasta.gz", "out.tsv", workers=4)
"""

from .engine import Predictor, PredictorSpec, checkpoint_identity, token_batches
from .output import FileOutput, StreamOutput, partial_paths
from .reader import count_records, file_digest, raw_records, records_from
from .run import (FAIL_AT_ENV, PredictSummary, Window, WorkerError, cpu_cores, default_workers, predict, shard_of,
                  windows)
from .writers import FORMATS, AttentionWindow, RowWriter, attention_window

__all__ = ["Predictor", "PredictorSpec", "checkpoint_identity", "token_batches", "FileOutput", "StreamOutput",
           "partial_paths", "count_records", "file_digest", "raw_records", "records_from", "FAIL_AT_ENV",
           "PredictSummary", "Window", "WorkerError", "cpu_cores", "default_workers", "predict", "shard_of", "windows",
           "FORMATS",
           "AttentionWindow", "RowWriter", "attention_window"]
