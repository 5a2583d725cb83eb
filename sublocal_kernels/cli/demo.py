"""``sublocal demo``: the synthetic set, an A-LSTM on CPU, its test accuracy and plots."""

from __future__ import annotations

from ._args import _add_common, _command, _device, _non_negative, _require_plotting


def add_demo(sub):
    p = _command(sub, "demo", help="synthetic set, A-LSTM on CPU, test accuracy, attention on signals, plots")
    p.add_argument("--out", default="demo_out", help="the demo's directory (its previous contents are replaced)")
    p.add_argument("--seed", type=_non_negative, default=0)
    _add_common(p, "cpu")
    p.add_argument("--quick", action="store_true", help="a smaller set and fewer epochs (a smoke test)")
    p.add_argument("--layers", choices=["sublocal", "torch"], default=None,
                   help="build the A-LSTM from sublocal_kernels.nn (default) or stock torch.nn layers")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo import run_demo

    _device(args)
    _require_plotting()
    run_demo(args.out, seed=args.seed, device=args.device, quick=args.quick, progress=args.progress,
             layers=args.layers)
    # The demo is a showcase: it prints whether the targets were met (and records it in
    # demo.json) but succeeds either way; tests/models/test_synthetic_accuracy.py is the gate.
    return 0
