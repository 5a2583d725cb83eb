"""The multi-label acceptance test: on the synthetic set where some proteins carry two planted
signals (and both labels), an A-LSTM trained with multi-label BCE and per-class thresholds
recovers both labels, and beats the same model trained single-label (first label only) on the
multi-label macro F1 by a clear margin.

Measured (1 thread, seed 0, the shared 2-core AMD EPYC): multi-label test macro F1 0.934 (micro
0.956, subset accuracy 0.887), both labels recovered on 0.881 of the 42 double-signal test
proteins; the single-label model's macro F1 0.802; the test about 32 s of wall time. Not every
seed does as well in 12 epochs: seed 1 reached 0.776 against 0.584 single-label (margin 0.19),
so the bars hold for seed 0 on this code, with room for float differences between machines.
"""

import numpy as np
import pytest
import torch

from sublocal_kernels.data import make_multilabel_synthetic
from sublocal_kernels.training import TrainConfig, load_checkpoint, prepare_data, run_model, train
from sublocal_kernels.training.metrics import multilabel_report

ARGS = dict(hidden_size=32, attention_size=32, dense_size=32, dropout=0.3, conv_dropout=0.1, forget_bias=1.0)
MACRO_F1_BAR = 0.88      # measured 0.934
MARGIN = 0.08            # over the single-label model's macro F1; measured 0.132 (0.934 vs 0.802)
PAIRS_BAR = 0.75         # share of double-signal test proteins with both labels predicted; measured 0.881


def _write(records, path, test_ids):
    with open(path, "w") as fh:
        for r in records:
            fh.write(f">{r.id} {r.label}-U{' test' if r.id in test_ids else ''}\n{r.sequence}\n")
    return str(path)


@pytest.mark.slow
def test_multilabel_alstm_recovers_both_labels(tmp_path):
    data = make_multilabel_synthetic(n_per_class=60, n_per_pair=60, min_length=100, max_length=250, seed=0)
    rng = np.random.default_rng(0)
    test_ids = {r.id for r in data.records if rng.random() < 0.25}
    multi = _write(data.records, tmp_path / "multi.fasta", test_ids)
    first = [type(r)(r.id, r.sequence, r.labels[0]) for r in data.records]
    single = _write(first, tmp_path / "single.fasta", test_ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count changes float32 results (see demo.py)
    try:
        common = dict(model="alstm", model_args=ARGS, epochs=12, lr=2e-3, clip_norm=1.0, batch_size=8, device="cpu",
                      progress=False, seed=0, val_fraction=0.15)
        ml = train(TrainConfig(data=multi, out=str(tmp_path / "ml"), multi_label=True, **common), log=lambda m: None)
        train(TrainConfig(data=single, out=str(tmp_path / "sl"), **common), log=lambda m: None)
        # Both evaluated on the same test proteins, against all their labels.
        cfg = TrainConfig(data=multi, multi_label=True, **common)
        ds, (_, _, te) = prepare_data(cfg)
        sl = load_checkpoint(str(tmp_path / "sl"))
        probs, _, _ = run_model(sl.model, ds, te, "cpu", multi_label=False)
        order = [sl.classes.index(c) for c in ds.classes]
        one_hot = np.eye(len(ds.classes))[probs[:, order].argmax(1)]
        single_report = multilabel_report(ds.targets[te], one_hot, [0.5] * len(ds.classes), ds.classes)
        best = load_checkpoint(str(tmp_path / "ml"))
        assert best.meta["multi_label"] is True and len(best.meta["thresholds"]) == len(ds.classes)
        ml_probs, _, _ = run_model(best.model, ds, te, "cpu")
    finally:
        torch.set_num_threads(threads)
    pred = ml_probs >= np.asarray(best.meta["thresholds"])
    pairs = ds.targets[te].sum(1) == 2
    both = float((pred[pairs] & (ds.targets[te][pairs] > 0)).sum(1).__eq__(2).mean())
    test = ml["test"]
    summary = (f"multi-label macro F1 {test['macro_f1']:.3f} (micro {test['micro_f1']:.3f}, subset accuracy "
               f"{test['subset_accuracy']:.3f}), both labels on {both:.3f} of {int(pairs.sum())} double-signal "
               f"proteins; single-label macro F1 {single_report['macro_f1']:.3f}")
    print(summary)
    assert test["n"] == len(te) == len(test_ids)
    assert test["macro_f1"] >= MACRO_F1_BAR, summary
    assert both >= PAIRS_BAR, summary
    assert test["macro_f1"] >= single_report["macro_f1"] + MARGIN, summary
