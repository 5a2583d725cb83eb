"""``sublocal predict``: a FASTA file of any size through one checkpoint or an ensemble, streamed
in windows, on CPU worker processes or torchrun ranks."""

from __future__ import annotations

import argparse
import os
import sys

from ._args import EXIT_STATUS, CommandError, _add_common, _command, _device, _existing, _positive


def add_predict(sub):
    p = _command(sub, "predict", help="TSV (or JSON lines) of id, predicted compartment, per-class probabilities",
                 epilog=PREDICT_EPILOG,
                 description="Predict every record of a FASTA file (plain or gzipped) of any size, streaming "
                             "it in windows of records: each window is sorted by length and cut into batches "
                             "of at most --max-tokens padded residues, and its rows are written in input "
                             "order as soon as it is done. Several checkpoints (or a comma-separated list) "
                             "are an ensemble averaged in one pass. Records sharing an id get a warning and "
                             "a row each.")
    p.add_argument("checkpoint", nargs="+",
                   help="run directory (its best checkpoint), NAME.json or NAME.safetensors; several: an ensemble")
    p.add_argument("fasta", help="the sequences (FASTA, plain or gzipped)")
    p.add_argument("-o", "--out", default="-",
                   help="output file (default: standard output); written as OUT.partial and renamed when complete")
    p.add_argument("--format", default="tsv", choices=["tsv", "jsonl"], help="rows as TSV (default) or JSON lines")
    p.add_argument("--attention-summary", action="store_true",
                   help="add the residue window with the highest summed attention (attention models only)")
    p.add_argument("--attention-window", type=_positive, metavar="N", default=15,
                   help="its width in residues (default: 15)")
    p.add_argument("--features", default=None, metavar="FILE",
                   help="features keyed by record id (.h5/.hdf5 or .npz), as the checkpoint was trained with: "
                        "per-residue (L, D) arrays, or for an mlp one (D,) vector per record. An mlp checkpoint "
                        "without --features embeds the FASTA itself with the embedder recorded from its training "
                        "features (their 'model' attribute, loaded as sublocal embed loads it, and 'pool')")
    p.add_argument("--window", type=_positive, default=None, metavar="N",
                   help="records read, sorted by length and written at a time (default: 1024)")
    p.add_argument("--chunk", type=_positive, default=None, help=argparse.SUPPRESS)  # the old name of --window
    p.add_argument("--max-tokens", type=_positive, default=32768, metavar="N",
                   help="padded residues per batch, longest length x records (default: 32768); a longer "
                        "record is a batch of its own")
    p.add_argument("--batch-size", type=_positive, default=256, metavar="N",
                   help="records per batch at most (default: 256)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the interrupted run that left OUT.partial (see 'resuming' below)")
    again.add_argument("--overwrite", action="store_true", help="replace an existing OUT (or OUT.partial)")
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                   help="a malformed record: stop (default; the rows before it are kept) or skip it with a warning")
    p.add_argument("--workers", type=_positive, metavar="N", default=None,
                   help="CPU processes, each predicting every N-th window (default: max(1, cores // 2))")
    p.add_argument("--threads", type=_positive, metavar="N", default=None,
                   help="torch threads per process (default: cores // workers)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bar with sequences/s and ETA on standard error (default: on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_common(p)
    p.set_defaults(func=cmd_predict)


PREDICT_EPILOG = """output:
  TSV columns: id, prediction, p_<class> for each class; for a multi-label checkpoint the
  prediction is the set of classes at or above their thresholds, joined by ';'. With
  --attention-summary: attention_start, attention_end (1-based, inclusive), attention_residues,
  attention_mass. --format jsonl writes one JSON object per record with the same fields.

per-protein embeddings (--model mlp):
  An mlp checkpoint reads one embedding vector per protein: from --features FILE, or, without
  it, from the embedder its training features came from (that file's 'model' and 'pool'
  attributes, recorded in the checkpoint): each batch of records is embedded and classified
  in one pass, nothing written in between. An embedder that cannot be loaded is an error
  naming it; pass --features then.

resuming:
  With -o OUT, rows go to OUT.partial, flushed and fsynced after each window, and
  OUT.partial.json records the input's size and SHA-256, the checkpoints' hashes, the output
  options and the number of records done. --resume continues from that record (by position,
  not id), dropping any row cut by the interruption; it is refused when the input, a
  checkpoint or the output options differ. An existing OUT is replaced only with --overwrite,
  and only once the new output is complete. A malformed record with --on-error stop, a failed
  worker or Ctrl-C keeps the rows written so far for --resume.

workers:
  On CPU, --workers N spawns N processes with --threads each and deals the windows
  round-robin; the parent reads the input and writes one output in input order. Under
  torchrun (WORLD_SIZE > 1) each rank predicts every WORLD_SIZE-th window into
  OUT.rank<R>-of-<W>.partial and rank 0 merges the parts into OUT; --resume continues them.

""" + EXIT_STATUS


def cmd_predict(args) -> int:
    from ..inference import PredictorSpec, cpu_cores, default_workers, predict
    from ..inference.distributed import predict_rank, world

    _existing(args.fasta, "FASTA")
    if args.features is not None:
        _existing(args.features, "--features")
    device = _device(args)
    if args.resume and args.out == "-":
        raise CommandError("--resume needs -o/--out: standard output cannot be continued", 2)
    workers, threads = default_workers(str(device))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        workers, threads = 1, max(1, cpu_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if args.workers not in (None, 1):
            raise CommandError("--workers: under torchrun each rank is one process (use --nproc_per_node)", 2)
    elif args.workers is not None:
        if args.workers > 1 and device.type != "cpu":
            raise CommandError(f"--workers {args.workers} runs CPU processes; on {device} use one process "
                               "(several GPUs: torchrun)", 2)
        workers = args.workers
        threads = max(1, cpu_cores() // workers)
    if args.threads is not None:
        threads = args.threads
    if workers == 1:
        import torch

        torch.set_num_threads(threads)
    window = args.window or args.chunk or 1024
    spec = PredictorSpec(args.checkpoint, str(device), args.format,
                         args.attention_window if args.attention_summary else None, args.max_tokens, args.batch_size,
                         args.features)
    rank, world_size = world()
    if world_size > 1:  # torchrun: this rank's shard, rank 0 merges
        if args.out == "-":
            raise CommandError("under torchrun, -o/--out is needed (the ranks' parts are merged into it)", 2)
        summary = predict_rank(spec, args.fasta, args.out, rank, world_size, window=window, resume=args.resume,
                               overwrite=args.overwrite, on_error=args.on_error)
    else:
        summary = predict(spec, args.fasta, args.out, window=window, resume=args.resume, overwrite=args.overwrite,
                          workers=workers, threads=threads, on_error=args.on_error, progress=args.progress)
    if args.out != "-" and rank == 0:
        extra = f" ({summary.skipped} malformed records skipped)" if summary.skipped else ""
        print(f"wrote {summary.rows} predictions to {args.out}{extra}", file=sys.stderr)
    return 0
