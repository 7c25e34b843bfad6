"""The kept findings (docs/findings/EXPERIMENT/: experiment.json, sweep.json, table.csv) recompute, without
training, to exactly the findings.json kept beside them: every verdict in FINDINGS.md can be checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diffrep.cli import main

KEPT = Path(__file__).parents[1] / "docs" / "findings"


def test_every_kept_verdict_recomputes_from_its_table(tmp_path, capsys):
    copy = tmp_path / "findings"
    shutil.copytree(KEPT, copy)
    for findings in copy.rglob("findings.json"):
        findings.unlink()  # recomputed from the tables alone
    assert main(["findings", str(copy)]) == 0
    out = capsys.readouterr().out
    kept = sorted(p.parent.name for p in KEPT.rglob("experiment.json"))
    assert kept and len(out.splitlines()) == len(kept)
    for name in kept:
        assert json.loads((copy / name / "findings.json").read_text()) == json.loads((KEPT / name / "findings.json").read_text())
        figure = json.loads((KEPT / name / "findings.json").read_text())["figures"][0]
        assert (copy / name / figure).is_file()


def test_findings_of_a_folder_without_kept_experiments_is_one_line(tmp_path, capsys):
    assert main(["findings", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no kept experiment" in err
