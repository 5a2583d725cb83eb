"""Example 01: fo-pool and the QRNN layer on a variable-length batch of RNA-like sequences.

    python python/01_fo_pool_and_qrnn.py

Shows the functional op against its reference, then a bidirectional QRNN layer over one-hot
nucleotides (A, C, G, U, N) of very different lengths, with a fused backward.
"""

import time

import torch

import sublocal_kernels as sk


def main():
    torch.manual_seed(0)
    # 1. the op and its reference agree (float64), for each sequence's own length, both directions
    B, T, D = 4, 500, 32
    f, z, o = torch.rand(B, T, D, dtype=torch.float64), torch.randn(B, T, D, dtype=torch.float64), \
        torch.rand(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([500, 321, 1, 77])
    for reverse in (False, True):
        h, c = sk.fo_pool(f, z, o, lengths, reverse=reverse)
        h_ref, c_ref = sk.fo_pool_ref(f, z, o, lengths, reverse=reverse)
        print(f"reverse={reverse}: max |h - ref| = {(h - h_ref).abs().max():.2e}, "
              f"max |c_last - ref| = {(c - c_ref).abs().max():.2e}")

    # 2. a bidirectional QRNN over one-hot RNA, lengths from 300 to 6000 nucleotides
    lengths = torch.tensor([6000, 2500, 800, 300])
    tokens = torch.randint(0, 5, (len(lengths), int(lengths.max())))
    x = torch.nn.functional.one_hot(tokens, 5).float()
    layer = sk.nn.QRNN(5, 128, num_layers=2, kernel_size=2, bidirectional=True)
    print(layer)
    t0 = time.perf_counter()
    out, c_n = layer(x, lengths)
    loss = out.sum() / lengths.sum()
    loss.backward()
    print(f"output {tuple(out.shape)}, final states {tuple(c_n.shape)}, forward+backward "
          f"{time.perf_counter() - t0:.2f} s on {torch.get_num_threads()} threads; "
          f"padding is zero: {bool((out[3, 300:] == 0).all())}")


if __name__ == "__main__":
    main()
