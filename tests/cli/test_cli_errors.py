"""The command line's failures: one line, ``sublocal COMMAND: error: ...``, naming the flag, file,
line or record, and the documented exit status (2: a flag; 1: data, files, checkpoints, run
directories, devices). Also the degenerate-data warnings, run-directory safety and resume."""

import json
import os
import subprocess
import sys

import pytest
import torch

from sublocal_kernels.training import CheckpointError, load_checkpoint

from .conftest import TINY, one_error, run_cli, warnings_of


@pytest.fixture
def bad_fasta(tmp_path):
    """A file whose first record is malformed: a command that reads it fails on it, so an error
    about a flag shows that the flag was checked before any data was read."""
    p = tmp_path / "bad.fasta"
    p.write_text(">A1 Nucleus-S\nMK1V\n>A2 Cytoplasm-S\nMKV\n")
    return str(p)


FLAG_ERRORS = [
    (["--dropout", "1.5"], 2, "argument --dropout: must be in [0, 1), got 1.5"),
    (["--conv-dropout", "-0.1"], 2, "argument --conv-dropout"),
    (["--val-fraction", "1.5"], 2, "argument --val-fraction: must be in [0, 1)"),
    (["--val-fraction", "0.6", "--test-fraction", "0.5"], 2, "--val-fraction 0.6 and --test-fraction 0.5"),
    (["--batch-size", "0"], 2, "argument --batch-size: must be at least 1, got 0"),
    (["--epochs", "0"], 2, "argument --epochs: must be at least 1, got 0"),
    (["--max-length", "0"], 2, "argument --max-length: must be at least 2"),
    (["--lr", "0"], 2, "argument --lr: must be > 0"),
    (["--hidden-size", "x"], 2, "argument --hidden-size: expected an integer, got 'x'"),
    (["--widths", "1,0"], 2, "argument --widths"),
    (["--device", "foo"], 2, "argument --device: expected auto, cpu, cuda or cuda:N, got 'foo'"),
    (["--window", "3"], 2, "--window does not apply to --model alstm"),
    (["--resume", "--overwrite"], 2, "argument --overwrite: not allowed with argument --resume"),
    (["--features", "nope.npz"], 1, "--features nope.npz: no such file or directory"),
]


@pytest.mark.parametrize("flags, status, message", FLAG_ERRORS, ids=[" ".join(f[0]) for f in FLAG_ERRORS])
def test_train_flags_checked_before_the_data(bad_fasta, tmp_path, capsys, flags, status, message):
    got, out, err = run_cli(capsys, "train", bad_fasta, "--out", tmp_path / "run", *flags)
    assert got == status
    assert message in one_error(err, "train")
    assert not os.path.exists(tmp_path / "run"), "nothing is created before the flags are checked"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(bad_fasta, tmp_path, capsys):
    for command in (["train", bad_fasta, "--out", tmp_path / "run"], ["predict", tmp_path, bad_fasta],
                    ["evaluate", tmp_path, bad_fasta], ["demo", "--out", tmp_path / "demo"]):
        got, _, err = run_cli(capsys, *command, "--device", "cuda")
        assert got == 1
        assert one_error(err, command[0]).startswith("--device cuda: device 'cuda' is not available")


def test_other_commands_flags(tiny_run, tiny_fasta, capsys):
    for argv, command, message in [
        (["predict", tiny_run, tiny_fasta, "--batch-size", "0"], "predict", "argument --batch-size"),
        (["predict", tiny_run, tiny_fasta, "--chunk", "0"], "predict", "argument --chunk"),
        (["evaluate", tiny_run, tiny_fasta, "--batch-size", "-1"], "evaluate", "argument --batch-size"),
        (["plot", tiny_run, tiny_fasta, "--max-sequences", "2"], "plot", "argument --max-sequences"),
        (["train", tiny_fasta, "--no-such-flag"], "train", "unrecognized arguments: --no-such-flag"),
    ]:
        got, _, err = run_cli(capsys, *argv)
        assert got == 2 and message in one_error(err, command), argv


def test_missing_files_name_the_argument(tiny_run, tiny_fasta, tmp_path, capsys):
    got, _, err = run_cli(capsys, "train", tmp_path / "nope.fasta", "--out", tmp_path / "run")
    assert got == 1 and one_error(err, "train") == f"DATA {tmp_path / 'nope.fasta'}: no such file or directory"
    got, _, err = run_cli(capsys, "predict", tiny_run, tmp_path / "nope.fasta")
    assert got == 1 and "FASTA" in one_error(err, "predict") and "nope.fasta" in err
    got, _, err = run_cli(capsys, "evaluate", tmp_path / "norun", tiny_fasta)
    assert got == 1 and "norun.json: no such checkpoint" in one_error(err, "evaluate")
    got, _, err = run_cli(capsys, "predict", tiny_run, tiny_fasta, "--features", tmp_path / "f.npz")
    assert got == 1 and "--features" in one_error(err, "predict")


def test_data_error_names_file_line_record_and_debug_shows_traceback(bad_fasta, tmp_path, capsys):
    got, _, err = run_cli(capsys, "train", bad_fasta, "--out", tmp_path / "run", *TINY)
    assert got == 1
    assert one_error(err, "train").startswith(f"{bad_fasta}, line 2, record 'A1': letter '1'")
    got, _, err = run_cli(capsys, "train", bad_fasta, "--out", tmp_path / "run2", "--overwrite", "--debug", *TINY)
    assert got == 1
    assert "Traceback (most recent call last)" in err and "DataFormatError" in err
    assert err.splitlines()[-1].startswith(f"sublocal train: error: {bad_fasta}, line 2")


def test_fewer_than_two_classes_is_an_error(tmp_path, capsys):
    one = tmp_path / "one.fasta"
    one.write_text(">a Nucleus-S\nMKV\n>b Nucleus-S\nMKVL\n>c Nucleus-S\nMKKL\n")
    got, _, err = run_cli(capsys, "train", one, "--out", tmp_path / "r1", *TINY)
    assert got == 1
    assert one_error(err, "train") == (f"{one}: 3 sequences, all of class 'Nucleus': a classifier needs sequences "
                                       "of at least two classes")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "Nucleus.fasta").write_text(">a\nMKV\n>b\nMKL\n")
    got, _, err = run_cli(capsys, "train", d, "--out", tmp_path / "r2", *TINY)
    assert got == 1 and "all of class 'Nucleus'" in one_error(err, "train")


def test_tiny_splits_are_warned_about(tiny_fasta, tmp_path, capsys):
    two = tmp_path / "two.fasta"
    two.write_text(">a Nucleus-S\nMKVLA\n>b Cytoplasm-S\nMKVLL\n")
    got, out, err = run_cli(capsys, "train", two, "--out", tmp_path / "r1", "--epochs", "1", *TINY)
    assert got == 0, err
    assert warnings_of(err, "train") == [
        f"{two}: the validation split is empty (2 sequences in 2 classes are too few for a validation fraction "
        "of 0.1): every epoch's checkpoint is kept as the best",
        f"{two}: the test split is empty (2 sequences in 2 classes are too few for a test fraction of 0.1): "
        "no test report"]
    assert "train/val/test = 2/0/0" in out
    rare = tmp_path / "rare.fasta"
    rare.write_text(open(tiny_fasta).read() + ">solo Golgi-S\nMKVLLLAGG\n")
    got, out, err = run_cli(capsys, "train", rare, "--out", tmp_path / "r2", "--epochs", "1", *TINY)
    assert got == 0, err
    assert warnings_of(err, "train") == [f"{rare}: class 'Golgi' has 1 sequence, too few for the split: kept in "
                                         "training only (none in validation or test)"]
    assert all(line.startswith("sublocal train: warning: ") for line in err.splitlines())


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(tiny_fasta, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", *TINY)[0] == 0
    before = (run / "best.safetensors").read_bytes()
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", "--seed", "1", *TINY)
    assert got == 1
    assert one_error(err, "train").startswith(f"{run} is not empty (it holds best.json, best.safetensors")
    assert "--resume" in err and "--overwrite" in err
    assert (run / "best.safetensors").read_bytes() == before, "the previous model is untouched"
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", "--seed", "1", "--overwrite",
                          *TINY)
    assert got == 0, err
    assert (run / "best.safetensors").read_bytes() != before
    assert not (run / ".lock").exists(), "the lock is released at the end"
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", tmp_path / "none", "--resume", *TINY)
    assert got == 1 and "no such run directory to resume" in one_error(err, "train")
    (tmp_path / "empty").mkdir()
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", tmp_path / "empty", "--resume", *TINY)
    assert got == 1 and "last.json: no checkpoint to resume from" in one_error(err, "train")


def test_lock_refuses_a_second_run_and_stale_locks_are_taken_over(tiny_fasta, tmp_path, capsys):
    import socket

    run = tmp_path / "run"
    run.mkdir()
    host = socket.gethostname()
    # A live process (this one) holds the lock: refused, naming its PID.
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": host}))
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", *TINY)
    assert got == 1
    assert one_error(err, "train") == (f"{run} is in use by another run, PID {os.getpid()} (lock file "
                                       f"{run / '.lock'}); wait for it to finish or choose another --out")
    assert not (run / "best.json").exists()
    # The PID of a process that has exited: the lock is taken over with a warning; stale
    # temporary files of an interrupted atomic write are removed.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (run / ".lock").write_text(json.dumps({"pid": int(gone), "host": host}))
    (run / ".last.safetensors.x1y2.tmp").write_bytes(b"partial")
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", *TINY)
    assert got == 0, err
    assert warnings_of(err, "train") == [
        f"{run / '.lock'}: taking over the lock of PID {gone}, which is no longer running",
        f"{run}: removed 1 temporary file(s) left by an interrupted write (.last.safetensors.x1y2.tmp)"]
    assert sorted(os.listdir(run)) == ["best.json", "best.safetensors", "config.json", "last.json",
                                       "last.safetensors", "summary.json"]


def test_only_rank_zero_takes_the_lock(tiny_fasta, tmp_path, monkeypatch):
    from sublocal_kernels.training import TrainConfig, trainer
    from sublocal_kernels.training.rundir import RunDirError

    run = tmp_path / "run"
    run.mkdir()
    lock = json.dumps({"pid": os.getpid(), "host": __import__("socket").gethostname()})
    (run / ".lock").write_text(lock)
    monkeypatch.setattr(trainer, "_train", lambda *a: "trained")
    cfg = TrainConfig(data=tiny_fasta, out=str(run), device="cpu")
    monkeypatch.setattr(trainer, "distributed_context", lambda device: trainer.DistributedContext(1, 2, 1))
    assert trainer.train(cfg) == "trained"  # rank 1 neither takes nor checks the lock
    assert (run / ".lock").read_text() == lock
    monkeypatch.setattr(trainer, "distributed_context", lambda device: trainer.DistributedContext(0, 2, 0))
    with pytest.raises(RunDirError, match="in use by another run"):
        trainer.train(cfg)


def test_resume_refuses_changed_hyperparameters(tiny_fasta, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", *TINY)[0] == 0
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--resume", "--epochs", "2",
                          "--lr", "1e-3", "--hidden-size", "16", "--dropout", "0.1")
    assert got == 1
    assert one_error(err, "train") == (
        f"{run / 'last.json'}: --resume with settings that differ from the checkpoint's: --dropout 0.1 "
        "(checkpoint: the model's default); --hidden-size 16 (checkpoint: 8); --lr 0.001 (checkpoint: 0.003). A resume may "
        "change only --epochs, --device, --progress, --checkpoint-every")
    # Flags equal to the checkpoint's and those a resume may change are accepted.
    got, out, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--resume", "--epochs", "2", "--lr", "3e-3",
                            "--device", "cpu", "--checkpoint-every", "3", "--no-progress")
    assert got == 0, err
    assert "resuming" in out and "epoch 2/2" in out
    assert json.load(open(run / "last.json"))["train_state"]["epoch"] == 2
    # Nothing left to train: said so, status 0.
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", run, "--resume")
    assert got == 0 and "already trained for 2 epochs (--epochs 2): nothing to train" in err


def test_checkpoint_errors_name_the_file(tiny_run, tiny_fasta, tmp_path, capsys):
    import shutil

    from sublocal_kernels.training.checkpoint import _doc_sha256

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    doc = json.load(open(run / "best.json"))
    doc["model_config"]["hidden_size"] = 9
    (run / "best.json").write_text(json.dumps(doc))
    got, _, err = run_cli(capsys, "evaluate", run, tiny_fasta)
    assert got == 1
    assert one_error(err, "evaluate") == (f"{run / 'best.json'}: the JSON does not match the SHA-256 recorded in "
                                          "it (it was edited or damaged after it was written); use an unedited copy")
    # A JSON whose own hash was recomputed after the edit: the tensors no longer fit, and the
    # error (one line, not a wall of size mismatches) names both files.
    doc["sha256"] = _doc_sha256(doc)
    (run / "best.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(str(run / "best.json"))
    msg = str(exc.value)
    assert msg.startswith(f"{run / 'best.safetensors'}: its tensors do not fit the model described in "
                          f"{run / 'best.json'}") and "size mismatch" in msg and "\n" not in msg
    (run / "best.json").write_text("{not json")
    got, _, err = run_cli(capsys, "predict", run, tiny_fasta)
    assert got == 1 and one_error(err, "predict").startswith(f"{run / 'best.json'}: not valid JSON")
    os.unlink(run / "last.safetensors")
    got, _, err = run_cli(capsys, "evaluate", run / "last.json", tiny_fasta)
    assert got == 1 and one_error(err, "evaluate").startswith(f"{run / 'last.safetensors'}: no such file")


def test_evaluate_empty_split(tiny_run, tmp_path, capsys):
    two = tmp_path / "two.fasta"
    two.write_text(">a Nucleus-S\nMKVLA\n>b Cytoplasm-S\nMKVLL\n")
    got, _, err = run_cli(capsys, "evaluate", tiny_run, two, "--split", "test")
    assert got == 1 and one_error(err, "evaluate") == f"{two}: no sequences in the checkpoint's 'test' split of it"


def test_command_leaves_the_process_group_it_joined(capsys, bad_fasta):
    """A torchrun rank's process group is destroyed before ``main`` returns, failure included:
    left to interpreter shutdown, gloo's threads can abort a run that succeeded (SIGABRT,
    "terminate called without an active exception", seen once in CI on the two-rank pretrain)."""
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        status, _, err = run_cli(capsys, "train", bad_fasta, *TINY, "--epochs", "1", "--out",
                                 os.path.join(os.path.dirname(bad_fasta), "run"))
        assert status == 1, err
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_resume_takes_the_same_data_through_a_link_but_not_another_file(tiny_fasta, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", tiny_fasta, "--out", run, "--epochs", "1", *TINY)[0] == 0
    # The data's folder reached through a symbolic link (a moved run tree, a renamed cache): one file.
    link = tmp_path / "linked"
    os.symlink(os.path.dirname(tiny_fasta), link)
    got, _, err = run_cli(capsys, "train", str(link / os.path.basename(tiny_fasta)), "--out", run, "--resume",
                          "--epochs", "2", *TINY)
    assert got == 0, err
    # A copy is another file: refused, naming both paths.
    copy = tmp_path / "copy.fasta"
    copy.write_bytes(open(tiny_fasta, "rb").read())
    got, _, err = run_cli(capsys, "train", str(copy), "--out", run, "--resume", "--epochs", "3", *TINY)
    assert got == 1 and f"DATA '{copy}' (checkpoint: '{tiny_fasta}')" in one_error(err, "train")
