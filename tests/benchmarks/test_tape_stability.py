"""benchmarks/accuracy/tape_stability.py on a generated stand-in for TAPE's files (tiny random UniRep
weights): it embeds, probes on the given split, records the data files' hashes, and writes the
README table."""

import csv
import hashlib
import json

import numpy as np

from benchmarks.accuracy import tape_stability
from tests.lm.test_unirep import random_arrays, write_npz


def _split(path, n, g):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["id", "sequence", "value"])
        for i in range(n):
            seq = "".join(g.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=int(g.integers(8, 15))))
            w.writerow([f"{path.stem}_{i}", seq, seq.count("K") + 0.1 * g.normal()])


def test_tape_stability_smoke(tmp_path):
    g = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    _split(data / "stability_train.tsv", 40, g)
    _split(data / "stability_valid.tsv", 16, g)
    model = write_npz(str(tmp_path), random_arrays(8, 1))
    results = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{tape_stability.START}\n{tape_stability.END}\n")
    assert tape_stability.main([str(data), "--model", model, "--results", str(results), "--readme", str(readme)]) == 0
    (path,) = results.glob("tape-stability-*.json")
    doc = json.loads(path.read_text())
    want = hashlib.sha256((data / "stability_train.tsv").read_bytes()).hexdigest()
    assert doc["data"]["stability_train.tsv"] == {"sha256": want, "records": 40}
    assert doc["n_train"] == 40 and doc["n_test"] == 16 and doc["dim"] == 24
    assert -1 <= doc["spearman"] <= 1 and set(doc["seconds"]) == {"embed_train", "embed_valid", "probe"}
    text = readme.read_text()
    assert f"**{doc['spearman']:.3f}**" in text and "UniRep (TAPE, fine-tuned) | published | test | 0.73" in text
