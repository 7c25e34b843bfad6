"""The checkpoint explorer's data (diffrep/report/explorer.py): every checkpoint, views aligned
across checkpoints, JSON that cannot break out of its <script>. Its behaviour in a browser:
tests/test_report_browser.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffrep.config import make_config
from diffrep.evaluation.evaluate import analyze_run
from diffrep.report.explorer import aligned, explorer_data, script_json
from diffrep.rundir import RunDir, read_npz
from diffrep.run import train


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    cfg = make_config("tiny", {"training.steps": 10, "probe.keep_every": 5})
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("explorer") / "run", cfg), quiet=True)


def test_aligned_undoes_a_rotation_a_reflection_and_a_change_of_scale():
    rng = np.random.default_rng(0)
    code = rng.normal(size=(50, 3)) * [3.0, 1.0, 0.3]
    turned = 7.0 * code @ Rotation.random(random_state=1).as_matrix() * [1, -1, 1] + 5.0
    first, second = aligned([code, turned])
    assert np.allclose(first, second, atol=2e-3)  # rounded to 3 decimals
    other = rng.normal(size=(50, 3))  # a different code stays different
    assert not np.allclose(aligned([code, other])[1], first, atol=0.1)
    assert aligned([None, code])[0] is None


def test_every_checkpoint_is_in_the_explorer_with_its_samples_outcomes_and_code(run):
    cfg = run.config()
    data = explorer_data(run, cfg, analyze_run(run, cfg))
    steps = [c["step"] for c in data["checkpoints"]]
    assert steps == run.checkpoint_steps()
    k = cfg.probe.grid ** 2
    assert len(data["probe"]["conditions"]) == k
    evaluation = len(data["evaluation"]["conditions"])
    for c in data["checkpoints"]:
        assert c["samples"].startswith("data:image/png;base64,")
        assert len(c["outcome"]) == len(c["error"]) == evaluation
        assert len(c["pca"]) == k and all(len(p) == 2 for p in c["pca"])  # at every checkpoint
        kept = "activations.layer4" in read_npz(run.probe_path(cfg.probe, c["step"], "npz"))
        assert (c["umap"] is not None) == kept  # UMAP where the activations were kept (probe.umap is off)
    # the curves share the checkpoints' steps
    assert data["curves"]["probe_steps"] == steps and data["curves"]["score_steps"] == steps
    assert len(data["curves"]["phase"]) == len(steps)


def test_script_json_cannot_end_its_script_element():
    data = {"run": "</script><script>alert(1)</script>", "note": "<!-- & -->"}
    text = script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data


def test_the_report_shows_the_runs_provenance(run):
    from diffrep.report import write_report

    session = run.provenance()["sessions"][0]
    page = write_report(run)[0].read_text()
    assert "<h2>Provenance</h2>" in page
    for key in ("started", "ended", "torch", "device"):
        assert f"<td class='text'>{session[key]}</td>" in page
