"""Example 02: swap the fused layers into an existing torch.nn model, keeping its weights.

    python python/02_drop_in_layers.py

An existing A-LSTM-style model written with stock layers (six ``nn.Conv1d``, ``nn.LSTM`` on a
``PackedSequence``, attention from ``nn.Linear``) is converted layer by layer:
``MultiWidthConv1d.from_conv1d`` takes the convolutions, ``sublocal_kernels.nn.LSTM`` loads
``nn.LSTM``'s state dict as is, and ``AttentionPool`` takes the attention projections. The two
models then give the same outputs on a variable-length batch, with no padding work in the new one.
"""

import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import sublocal_kernels as sk


class StockALSTM(nn.Module):
    """How such a model is usually written: (B, T, C) one-hot in, logits out."""

    def __init__(self, classes=10, hidden=64, attention=50):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(20, 10, k, padding=k // 2) for k in (1, 3, 5, 9, 15, 21))
        self.lstm = nn.LSTM(60, hidden, batch_first=True, bidirectional=True)
        self.att_proj = nn.Linear(2 * hidden, attention)
        self.att_score = nn.Linear(attention, 1, bias=False)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1])[None] < lengths[:, None]
        x = x * mask[..., None]
        y = torch.relu(torch.cat([c(x.transpose(1, 2)) for c in self.convs], 1)).transpose(1, 2) * mask[..., None]
        packed = pack_padded_sequence(y, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        e = self.att_score(torch.tanh(self.att_proj(h)))[..., 0].masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, 1)
        return self.out(torch.bmm(alpha[:, None], h)[:, 0])


class FusedALSTM(nn.Module):
    """The same model over sublocal_kernels.nn, built from a trained StockALSTM."""

    def __init__(self, stock: StockALSTM):
        super().__init__()
        self.conv = sk.nn.MultiWidthConv1d.from_conv1d(list(stock.convs), activation="relu")
        self.lstm = sk.nn.LSTM(60, stock.lstm.hidden_size, batch_first=True, bidirectional=True)
        self.lstm.load_state_dict(stock.lstm.state_dict())  # the same parameter names and shapes
        self.attention = sk.nn.AttentionPool(2 * stock.lstm.hidden_size, stock.att_proj.out_features)
        with torch.no_grad():
            self.attention.w_a.copy_(stock.att_proj.weight.t())
            self.attention.b_a.copy_(stock.att_proj.bias)
            self.attention.v_a.copy_(stock.att_score.weight[0])
        self.out = stock.out

    def forward(self, x, lengths):
        h, _ = self.lstm(self.conv(x, lengths), lengths)
        context, _ = self.attention(h, lengths)
        return self.out(context)


def main():
    torch.manual_seed(0)
    stock = StockALSTM().eval()
    fused = FusedALSTM(stock).eval()
    lengths = torch.tensor([800, 431, 97, 1])
    x = torch.nn.functional.one_hot(torch.randint(0, 20, (4, 800)), 20).float()
    with torch.no_grad():
        t0 = time.perf_counter()
        a = stock(x, lengths)
        t1 = time.perf_counter()
        b = fused(x, lengths)
        t2 = time.perf_counter()
    print(f"max |stock - fused| = {(a - b).abs().max():.2e}")
    print(f"forward: stock {1e3 * (t1 - t0):.1f} ms, fused {1e3 * (t2 - t1):.1f} ms "
          f"({torch.get_num_threads()} threads, one noisy run: see benchmarks/ for measurements)")


if __name__ == "__main__":
    main()
