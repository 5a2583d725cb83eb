"""ChannelAttentionPool module: each sequence of a padded batch is pooled as it would be alone."""

from __future__ import annotations

import torch

from sublocal_kernels.models.layers import TorchChannelAttentionPool
from sublocal_kernels.nn import ChannelAttentionPool
from tests.helpers import assert_close


def test_batch_equals_each_sequence_alone_and_the_torch_build():
    B, T, D = 4, 23, 6
    values = torch.randn(B, T, D, dtype=torch.float64)
    logits = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([23, 1, 9, 17])
    context, maxpool, alpha = ChannelAttentionPool()(values, logits, lengths, return_alpha=True)
    for b in range(B):
        n = int(lengths[b])
        a = torch.softmax(logits[b, :n], dim=0)
        assert_close(alpha[b, :n], a)
        assert (alpha[b, n:] == 0).all()
        assert_close(context[b], (a * values[b, :n]).sum(0))
        assert torch.equal(maxpool[b], values[b, :n].max(0).values)
    for x, y in zip((context, maxpool, alpha), TorchChannelAttentionPool()(values, logits, lengths, True)):
        assert_close(x, y)
    assert ChannelAttentionPool()(values, logits, lengths)[2] is None
