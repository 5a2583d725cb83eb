"""`sublocal predict` at proteome scale: order, token budgets, bounded streaming, resume, worker
failure, formats, the attention summary, ensembles, bad records mid-file.

The models are tiny and randomly initialised (saved with the checkpoint code), the inputs are
written here; every run uses ``--threads 1`` so that runs in one process and in workers compute
bit for bit the same thing.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("safetensors.torch")

from sublocal_kernels.data import get_alphabet
from sublocal_kernels.inference import FAIL_AT_ENV, attention_window, default_workers, partial_paths, shard_of
from sublocal_kernels.inference import run as run_module
from sublocal_kernels.models import ALSTM, build_model
from sublocal_kernels.training import load_checkpoint, save_checkpoint

from .conftest import one_error, run_cli

CLASSES = ["Cytoplasm", "Nucleus", "ER"]
LETTERS = "ACDEFGHIKLMNPQRSTVWY"
SMALL = dict(widths=[1, 3], filters_per_width=2, hidden_size=4, attention_size=4, dense_size=4, dropout=0.0)


def save_model(directory, name="alstm", seed=0, meta=None, **config):
    torch.manual_seed(seed)
    config = {k: v for k, v in {**SMALL, **config}.items() if v is not None}
    model = build_model(name, num_classes=len(CLASSES), **config).eval()
    doc = {"classes": CLASSES, "alphabet": "protein", "max_length": None, "encoding": "onehot",
           "num_features": 0}
    return save_checkpoint(str(directory), f"{name}{seed}", model, {**doc, **(meta or {})})


def write_fasta(path, lengths, seed=0, bad=()):
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for i, n in enumerate(lengths):
            seq = "".join(rng.choice(list(LETTERS), n))
            if i in bad:
                seq = seq[:2] + "1" + seq[3:]
            fh.write(f">P{i:03d} protein {i}\n")
            fh.writelines(seq[k:k + 60] + "\n" for k in range(0, len(seq), 60))
    return str(path)


MIXED = [30, 5, 400, 12, 90, 3000, 7, 61, 250, 33, 18, 140, 9, 75, 300, 41, 22, 8, 120, 64, 11, 95, 44]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"a": save_model(d, seed=0), "b": save_model(d, seed=1),
            "rlstm": save_model(d, "rlstm", seed=2, attention_size=None)}


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("fasta") / "mixed.fasta", MIXED)


def predict(capsys, *argv):
    return run_cli(capsys, "predict", *argv, "--threads", "1", "--device", "cpu")


def rows(text):
    return [line.split("\t") for line in text.splitlines()[1:]]


def alone(json_path, fasta_path):
    """Each record through the model on its own (a batch of one): probabilities and attention."""
    model = load_checkpoint(json_path).model
    alphabet = get_alphabet("protein")
    out = []
    with torch.inference_mode():
        for block in open(fasta_path).read().split(">")[1:]:
            head, *lines = block.splitlines()
            tokens = torch.from_numpy(alphabet.encode("".join(lines)).astype(np.int64))[None]
            details = model.forward_details(tokens, torch.tensor([tokens.shape[1]]))
            out.append((head.split()[0], torch.softmax(details.logits, -1)[0].numpy(),
                        None if details.attention is None else details.attention[0].numpy(), "".join(lines)))
    return out


def test_order_and_token_budget_with_one_huge_record(models, fasta, capsys):
    shapes = []

    def hook(module, args):
        if isinstance(module, ALSTM):
            shapes.append(tuple(args[0].shape))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        got, out, err = predict(capsys, models["a"], fasta, "--window", "7", "--max-tokens", "500",
                                "--batch-size", "3")
    finally:
        handle.remove()
    assert got == 0, err
    assert all(b * t <= 500 or b == 1 for b, t in shapes), shapes
    assert all(b <= 3 for b, _ in shapes) and (1, 3000) in shapes and (1, 400) in shapes
    assert sum(b for b, _ in shapes) == len(MIXED)
    expected = alone(models["a"], fasta)
    table = rows(out)
    assert [r[0] for r in table] == [e[0] for e in expected], "rows in input order"
    np.testing.assert_allclose([[float(v) for v in r[2:]] for r in table], [e[1] for e in expected], atol=2e-6)
    assert [r[1] for r in table] == [CLASSES[int(np.argmax(e[1]))] for e in expected]


def test_reader_holds_at_most_one_window(models, tmp_path, capsys, monkeypatch):
    path = write_fasta(tmp_path / "many.fasta", [20 + (i * 7) % 50 for i in range(61)])
    pulled = [0]
    held = []
    original = run_module.records_from

    def counting(*args, **kwargs):
        for item in original(*args, **kwargs):
            pulled[0] += 1
            yield item

    predict_window = run_module.Predictor.predict_window

    def spy(self, records):
        held.append((pulled[0], len(records)))
        return predict_window(self, records)

    monkeypatch.setattr(run_module, "records_from", counting)
    monkeypatch.setattr(run_module.Predictor, "predict_window", spy)
    got, out, err = predict(capsys, models["a"], path, "--window", "8")
    assert got == 0, err and len(rows(out)) == 61
    assert [n for _, n in held] == [8] * 7 + [5]
    done = np.cumsum([0] + [n for _, n in held])[:-1]
    # When a window is predicted, the reader has read that window and at most one record more.
    assert all(p - d <= 8 + 1 for (p, _), d in zip(held, done)), held


def fault_run(models, path, out, at, *extra):
    env = dict(os.environ, **{FAIL_AT_ENV: str(at)})
    cmd = [sys.executable, "-m", "sublocal_kernels.cli", "predict", models["a"], path, "-o", str(out), "--window",
           "5", "--threads", "1", "--device", "cpu", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_resume_after_interruption_is_byte_identical(models, fasta, tmp_path, capsys):
    ref = tmp_path / "ref.tsv"
    assert predict(capsys, models["a"], fasta, "-o", ref, "--window", "5")[0] == 0
    out = tmp_path / "out.tsv"
    proc = fault_run(models, fasta, out, 13)
    assert proc.returncode == run_module.FAULT_STATUS, proc.stderr
    partial, sidecar = partial_paths(str(out))
    state = json.load(open(sidecar))
    assert state["records"] == 10 and state["rows"] == 10 and not os.path.exists(out)
    data = open(partial, "rb").read()
    assert len(data) > state["bytes"] and not data.endswith(b"\n"), "the simulated crash cut a row"
    assert data[: state["bytes"]] == open(ref, "rb").read()[: state["bytes"]]
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--window", "5")
    assert got == 1 and "--resume" in one_error(err, "predict"), "an interrupted run is not overwritten silently"
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--window", "5", "--resume")
    assert got == 0, err
    assert open(out, "rb").read() == open(ref, "rb").read()
    assert not os.path.exists(partial) and not os.path.exists(sidecar)
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--resume")
    assert got == 1 and "is complete" in one_error(err, "predict")


def test_resume_refuses_another_input_or_checkpoint(models, fasta, tmp_path, capsys):
    out = tmp_path / "out.tsv"
    assert fault_run(models, fasta, out, 8).returncode == run_module.FAULT_STATUS
    changed = tmp_path / "changed.fasta"
    changed.write_text(open(fasta).read().replace(">P004", ">Q004"))
    got, _, err = predict(capsys, models["a"], changed, "-o", out, "--resume")
    assert got == 1 and "input SHA-256" in one_error(err, "predict")
    longer = tmp_path / "longer.fasta"
    longer.write_text(open(fasta).read() + ">extra\nMKV\n")
    got, _, err = predict(capsys, models["a"], longer, "-o", out, "--resume")
    assert got == 1 and "input size" in one_error(err, "predict")
    got, _, err = predict(capsys, models["b"], fasta, "-o", out, "--resume", "--format", "jsonl")
    message = one_error(err, "predict")
    assert got == 1 and "checkpoint 1" in message and "output format 'jsonl'" in message
    before = open(partial_paths(str(out))[0], "rb").read()
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--resume")
    assert got == 0, err
    assert open(out, "rb").read()[: len(before) - 40] == before[: len(before) - 40]


def test_killed_worker_then_resume(models, fasta, tmp_path, capsys, monkeypatch):
    ref = tmp_path / "ref.tsv"
    assert predict(capsys, models["a"], fasta, "-o", ref, "--window", "5")[0] == 0
    out = tmp_path / "out.tsv"
    monkeypatch.setenv(FAIL_AT_ENV, "13")  # worker 1 of 2 takes windows 0, 2, 4: records 11-15 is window 2
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--window", "5", "--workers", "2")
    message = one_error(err, "predict")
    assert got == 1 and "worker 1 of 2" in message and "exited with status 86" in message, message
    assert "records 11-15" in message and "the 10 rows of records 1-10 are kept" in message, message
    assert json.load(open(partial_paths(str(out))[1]))["records"] == 10
    monkeypatch.delenv(FAIL_AT_ENV)
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--window", "5", "--workers", "2", "--resume")
    assert got == 0, err
    assert open(out, "rb").read() == open(ref, "rb").read()


def test_jsonl_matches_tsv(models, fasta, capsys):
    _, tsv, _ = predict(capsys, models["a"], fasta, "--window", "6")
    got, out, err = predict(capsys, models["a"], fasta, "--window", "6", "--format", "jsonl")
    assert got == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == len(MIXED) and list(docs[0]) == ["id", "prediction", "probabilities"]
    for doc, row in zip(docs, rows(tsv)):
        assert doc["id"] == row[0] and doc["prediction"] == row[1]
        assert list(doc["probabilities"]) == CLASSES
        np.testing.assert_allclose(list(doc["probabilities"].values()), [float(v) for v in row[2:]], atol=1e-6)


def test_attention_summary_is_the_best_window(models, fasta, capsys):
    got, out, err = predict(capsys, models["a"], fasta, "--attention-summary", "--attention-window", "4",
                            "--window", "9")
    assert got == 0, err
    assert out.splitlines()[0].endswith("attention_start\tattention_end\tattention_residues\tattention_mass")
    for row, (rid, _, att, seq) in zip(rows(out), alone(models["a"], fasta)):
        sums = [att[s:s + 4].sum() for s in range(max(1, len(att) - 3))]
        best = int(np.argmax(sums))
        start, end, residues, mass = int(row[-4]), int(row[-3]), row[-2], float(row[-1])
        assert row[0] == rid and residues == seq[start - 1:end]
        assert abs(mass - sums[best]) < 2e-5 and sums[start - 1] >= max(sums) - 2e-5
        assert end - start + 1 == min(4, len(seq))
    got, _, err = predict(capsys, models["rlstm"], fasta, "--attention-summary")
    assert got == 1 and "has no attention" in one_error(err, "predict")


def test_attention_window_finds_a_planted_signal():
    weights = np.full(50, 0.01)
    weights[30:36] = [0.1, 0.2, 0.2, 0.1, 0.05, 0.01]
    seq = "A" * 30 + "KDELKD" + "A" * 14
    w = attention_window(weights, np.arange(50), seq, 4)
    assert (w.start, w.end, w.residues) == (31, 34, "KDEL") and abs(w.mass - 0.6) < 1e-12
    # Truncated input: steps map to the kept residues of a longer record.
    kept = np.concatenate([np.arange(25), np.arange(75, 100)])
    w = attention_window(weights, kept, "M" * 80 + "KDEL" + "M" * 16, 4)
    assert (w.start, w.end, w.residues) == (81, 84, "KDEL")


def test_ensemble_is_the_mean_of_its_members(models, fasta, capsys):
    single = [np.array([[float(v) for v in r[2:]] for r in rows(predict(capsys, models[k], fasta)[1])])
              for k in ("a", "b")]
    got, out, err = predict(capsys, models["a"], models["b"], fasta)
    assert got == 0, err
    ens = np.array([[float(v) for v in r[2:]] for r in rows(out)])
    np.testing.assert_allclose(ens, (single[0] + single[1]) / 2, atol=2e-6)
    assert [r[1] for r in rows(out)] == [CLASSES[int(i)] for i in ens.argmax(1)]
    assert predict(capsys, f"{models['a']},{models['b']}", fasta)[1] == out, "a comma-separated list is the same"


def test_bad_record_stop_then_skip(models, tmp_path, capsys):
    lengths = [40 + i for i in range(30)]
    bad = write_fasta(tmp_path / "bad.fasta", lengths, bad={12})
    line = 2 + sum(2 + (n - 1) // 60 for n in lengths[:12])  # the line after P012's header
    out = tmp_path / "out.tsv"
    got, _, err = predict(capsys, models["a"], bad, "-o", out, "--window", "8")
    message = one_error(err, "predict")
    assert got == 1 and message.startswith(f"{bad}, line {line}, record 'P012': letter '1' at position 3")
    assert "the 12 rows of records 1-12 are kept" in message and "--resume --on-error skip" in message
    got, _, err = predict(capsys, models["a"], bad, "-o", out, "--window", "8", "--resume", "--on-error", "skip")
    assert got == 0 and err.endswith(f"wrote 29 predictions to {out} (1 malformed records skipped)\n"), err
    assert "skipped a malformed record" in err and "'P012'" in err
    resumed = rows(open(out).read())
    skip = tmp_path / "skip.tsv"
    assert predict(capsys, models["a"], bad, "-o", skip, "--window", "8", "--on-error", "skip")[0] == 0
    once = rows(open(skip).read())
    assert [r[0] for r in resumed] == [r[0] for r in once] == [f"P{i:03d}" for i in range(30) if i != 12]
    np.testing.assert_allclose([[float(v) for v in r[2:]] for r in resumed],
                               [[float(v) for v in r[2:]] for r in once], atol=2e-6)


def test_multi_label_rows(tmp_path, fasta, capsys):
    path = save_model(tmp_path, meta={"multi_label": True, "thresholds": [0.5, 0.3, 0.9]})
    got, out, err = predict(capsys, path, fasta)
    assert got == 0, err
    for r in rows(out):
        probs = [float(v) for v in r[2:]]
        assert r[1] == ";".join(c for c, p, t in zip(CLASSES, probs, [0.5, 0.3, 0.9]) if p >= t)
    docs = [json.loads(line) for line in predict(capsys, path, fasta, "--format", "jsonl")[1].splitlines()]
    assert all(isinstance(d["predicted"], list) and "prediction" not in d for d in docs)
    assert [";".join(d["predicted"]) for d in docs] == [r[1] for r in rows(out)]


def test_existing_output_is_kept_without_overwrite(models, fasta, tmp_path, capsys):
    out = tmp_path / "mine.tsv"
    out.write_text("my precious results\n")
    got, _, err = predict(capsys, models["a"], fasta, "-o", out)
    assert got == 1 and "--overwrite" in one_error(err, "predict") and out.read_text() == "my precious results\n"
    got, _, err = predict(capsys, models["a"], fasta, "--resume")
    assert got == 2 and "--resume needs -o" in one_error(err, "predict")
    got, _, err = predict(capsys, models["a"], fasta, "-o", out, "--overwrite", "--progress")
    assert got == 0 and "seq/s" in err and f"{len(MIXED)}/{len(MIXED)}" in err
    assert len(rows(out.read_text())) == len(MIXED)


def test_shard_assignment_and_default_workers():
    assert [shard_of(k, 3) for k in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert default_workers("cpu", 16) == (8, 2) and default_workers("cpu", 2) == (1, 2)
    assert default_workers("cpu", 1) == (1, 1) and default_workers("cuda:0", 16) == (1, 16)


def torchrun(models, path, out, *extra, fail_at=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if fail_at is not None:
        env[FAIL_AT_ENV] = str(fail_at)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "sublocal_kernels.cli", "predict", models["a"], path, "-o", str(out), "--window", "5", "--device", "cpu",
           "--threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_torchrun_killed_rank_then_resume_merges_in_order(models, fasta, tmp_path, capsys):
    # Two gloo ranks (windows dealt round-robin); rank 1 dies in the middle of writing its
    # second window (records 16-20) and torchrun ends rank 0; --resume continues both parts and
    # rank 0 merges them into the same bytes as one process writes.
    ref = tmp_path / "ref.tsv"
    assert predict(capsys, models["a"], fasta, "-o", ref, "--window", "5")[0] == 0
    out = tmp_path / "two.tsv"
    proc = torchrun(models, fasta, out, fail_at=18)
    assert proc.returncode != 0 and not os.path.exists(out)
    assert os.path.exists(tmp_path / "two.tsv.rank1-of-2.partial.json")
    proc = torchrun(models, fasta, out, "--resume")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert open(out, "rb").read() == open(ref, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["ref.tsv", "two.tsv"], "the ranks' parts are removed after the merge"


def test_streaming_reader_matches_the_training_reader(fasta, tmp_path):
    import gzip

    from sublocal_kernels.data import iter_fasta
    from sublocal_kernels.inference import count_records, records_from

    text = open(fasta, "rb").read()
    gz = tmp_path / "bom.fasta.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + text))
    want = [(r.id, r.sequence, r.source[1]) for r in iter_fasta(fasta)]
    for path in (fasta, gz):
        got = [(r.id, r.sequence, r.source[1]) for _, r in records_from(path, "protein")]
        assert got == want
        assert count_records(path) == len(MIXED)
    assert [p for p, _ in records_from(fasta, "protein", start=20)] == [20, 21, 22]


def test_resume_starts_afresh_a_rank_that_never_wrote_its_part(models, fasta, tmp_path, capsys, monkeypatch):
    # torchrun ends every rank when one fails, and a rank may still have been starting: on --resume
    # a rank without a part starts its part afresh when a sibling's part shows the run was
    # interrupted, and the merge equals one process's output. (The ranks run here one after the
    # other in this process, the barrier a no-op.)
    from sublocal_kernels.inference import PredictorSpec
    from sublocal_kernels.inference import distributed as dist_module

    monkeypatch.setattr(dist_module, "_barrier", lambda device: None)
    ref = tmp_path / "ref.tsv"
    assert predict(capsys, models["a"], fasta, "-o", ref, "--window", "5")[0] == 0
    out = str(tmp_path / "two.tsv")
    spec = PredictorSpec([models["a"]])
    with pytest.raises(FileNotFoundError, match=r"--resume: no interrupted run to continue"):
        dist_module.predict_rank(spec, fasta, out, 0, 2, window=5, resume=True)  # nothing was ever run
    dist_module.predict_rank(spec, fasta, out, 1, 2, window=5)  # rank 1 wrote its part; rank 0 never started
    assert not os.path.exists(out)
    dist_module.predict_rank(spec, fasta, out, 0, 2, window=5, resume=True)
    assert open(out, "rb").read() == open(ref, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["ref.tsv", "two.tsv"]
