"""Example 06: pretrain a UniRep-style protein language model, embed sequences, probe them.

    python python/06_protein_language_model.py              # generated data, a few minutes on CPU
    python python/06_protein_language_model.py --smoke      # seconds (the test of every example)

The data are generated: sequences from two Markov chains over the 20 residues that have the
same residue frequencies but different transitions (so counting residues cannot tell them
apart). The language model never sees which chain made a sequence; a cross-validated logistic
regression on its mean embeddings then recovers it, and a ridge regression reads each chain's
"mixing weight" (a number per sequence) from the same embeddings. This is the library version of

    sublocal pretrain chains.fasta --out run
    sublocal embed run chains.fasta -o emb.h5 --pool mean
    sublocal probe emb.h5 labels.tsv --task classification --tsne tsne.png
"""

import argparse
import os
import tempfile

import numpy as np
import torch

from sublocal_kernels.lm import PretrainConfig, embed_fasta, pretrain, probe
from sublocal_kernels.lm.synthetic import MarkovChain, write_fasta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="working directory (default: a new temporary one)")
    p.add_argument("--smoke", action="store_true", help="tiny data and model: seconds, not minutes")
    args = p.parse_args(argv)
    work = args.out or tempfile.mkdtemp(prefix="sublocal-example06-")
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(1)  # the figures below are those of one thread
    n, hidden, epochs = (60, 16, 2) if args.smoke else (500, 64, 20)

    rng = np.random.default_rng(0)
    # (1 - w) * uniform + w * permutation is doubly stochastic: every residue equally frequent.
    perms = [np.eye(20)[rng.permutation(20)] for _ in range(2)]
    seqs, labels, weights = [], [], []
    for k, perm in enumerate(perms):
        for _ in range(n):
            w = float(rng.uniform(0.15, 0.45))  # how strongly this sequence follows its chain
            chain = MarkovChain((1 - w) * np.full((20, 20), 1 / 20) + w * perm)
            seqs += chain.sample([int(rng.integers(40, 100))], seed=int(rng.integers(1 << 31)))
            labels.append("AB"[k])
            weights.append(w)
    fasta = os.path.join(work, "chains.fasta")
    ids = write_fasta(fasta, seqs)
    with open(os.path.join(work, "labels.tsv"), "w") as fh:
        fh.write("id\tlabel\tvalue\n" + "".join(f"{i}\t{c}\t{w:.4f}\n" for i, c, w in zip(ids, labels, weights)))
    print(f"{len(seqs)} generated sequences from 2 chains with equal residue frequencies, lengths 40-99")

    run = os.path.join(work, "run")
    cfg = PretrainConfig(fasta=[fasta], out=run, model_args={"hidden_size": hidden}, epochs=epochs, lr=1e-2,
                         max_tokens=2000, val_fraction=0.1, device="cpu", progress=False)
    summary = pretrain(cfg, overwrite=True, log=lambda m: None)
    last = summary["history"][-1]
    print(f"pretrained {summary['steps']} steps at {summary['tokens_per_s']:.0f} residues/s: validation loss "
          f"{last['val_loss']:.3f} nats, perplexity {last['val_perplexity']:.2f}, next-residue accuracy "
          f"{last['val_accuracy']:.3f} (guessing uniformly among the 20 residues and the end: loss 3.04, accuracy 0.05)")

    emb = os.path.join(work, "emb.h5")
    embed_fasta(run, fasta, emb, "mean", overwrite=True)
    labels_tsv = os.path.join(work, "labels.tsv")
    cls = probe(emb, labels_tsv, "classification", folds=5, tsne=os.path.join(work, "tsne.png"))
    reg = probe(emb, labels_tsv, "regression", folds=5)
    print(f"which chain (5-fold logistic regression on mean embeddings): accuracy {cls['accuracy']:.3f}, "
          f"MCC {cls['mcc']:.3f}")
    print(f"mixing weight (5-fold ridge regression): Spearman rho {reg['spearman']:.3f}")
    print(f"t-SNE map: {cls['tsne']}")


if __name__ == "__main__":
    main()
