"""Security: run files are loaded without executing code, and reports escape every config string.

diffrep reads checkpoints as safetensors (plus JSON metadata), configs, scores and probes as
JSON, and arrays as .npz without object arrays. Nothing is unpickled, so a file planted in a run
directory cannot run code: a pickle where a checkpoint or an npz should be is refused as damaged.
Strings that come from configs (the preset label, grid values) and from folder names end up in
report.html escaped: as text, never as markup.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import shutil
import sys
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from diffrep.cli import main
from diffrep.config import make_config
from diffrep.rundir import RunDir
from diffrep.sweep.grid import expand_grid
from diffrep.sweep.runner import prepare_sweep_dir
from diffrep.run import train

SRC = Path(__file__).resolve().parents[1] / "src" / "diffrep"
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "marshal", "shelve"}


# -- no code path can unpickle -----------------------------------------------------------------


def _name(node: ast.AST) -> str:
    """'torch.load' for the call target torch.load, '' for what is not a dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str) -> list[str]:
    """Each import of a pickling module, torch.load without weights_only=True, allow_pickle other
    than False, yaml.load, pandas.read_pickle, eval and exec in a Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load") or name == "load" and "weights_only" in keywords:
                if not _is_true(keywords.get("weights_only")):
                    found.append(f"{name} without weights_only=True (line {node.lineno})")
            if "allow_pickle" in keywords and not (isinstance(keywords["allow_pickle"], ast.Constant)
                                                   and keywords["allow_pickle"].value is False):
                found.append(f"{name}(allow_pickle=...) (line {node.lineno})")
            if name in ("eval", "exec", "yaml.load", "yaml.unsafe_load", "pd.read_pickle", "pandas.read_pickle"):
                found.append(f"{name} (line {node.lineno})")
    return found


def test_the_scanner_finds_unsafe_loads():
    assert unsafe_loads("import pickle") and unsafe_loads("from dill import loads")
    assert unsafe_loads("torch.load(path)") and unsafe_loads("torch.load(path, weights_only=False)")
    assert unsafe_loads("np.load(p, allow_pickle=True)") and unsafe_loads("eval(text)")
    assert not unsafe_loads("torch.load(path, weights_only=True)\nnp.load(p, allow_pickle=False)\njson.loads(t)")


def test_no_code_path_unpickles():
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) >= 10
    found = {str(p.relative_to(SRC)): unsafe_loads(p.read_text()) for p in sources}
    assert {k: v for k, v in found.items() if v} == {}


class RunsCode:
    """Unpickling this creates the file `marker`: a stand-in for a payload that runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    cfg = make_config("tiny", {"training.steps": 3, "scoring.during_training": False})
    return train(cfg, RunDir.create(tmp_path_factory.mktemp("security") / "run", cfg), quiet=True).path


def test_a_checkpoint_holding_a_pickle_is_refused_without_running_it(trained_run, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(trained_run, run)
    torch.save({"model.stem.weight": RunsCode(marker)}, tmp_path / "payload.pt")
    torch.load(tmp_path / "payload.pt", weights_only=False)  # the payload works: unpickling it runs it
    assert marker.exists()
    marker.unlink()
    shutil.copy(tmp_path / "payload.pt", run / "checkpoints" / "step_00000003.safetensors")

    capsys.readouterr()
    assert main(["sample", str(run), "--checkpoint", "3"]) == 2
    err = capsys.readouterr().err
    assert "step_00000003.safetensors is unreadable" in err and "Traceback" not in err
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # set aside as damaged, retrained from step 2
    assert "skipping checkpoint at step 3" in capsys.readouterr().err
    assert (run / "checkpoints" / "step_00000003.safetensors.corrupt").exists()
    assert not marker.exists()


def test_an_npz_holding_a_pickle_is_refused_without_running_it(trained_run, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(trained_run, run)
    payload = run / "probes" / "step_00000003.npz"
    buffer = io.BytesIO()
    np.savez(buffer, conditions=np.array([RunsCode(marker)], dtype=object))
    payload.write_bytes(buffer.getvalue())
    before = payload.read_bytes()

    capsys.readouterr()
    assert main(["probe", str(run), "--checkpoints", "3"]) == 2
    err = capsys.readouterr().err
    assert "step_00000003.npz is unreadable" in err and "Traceback" not in err
    assert payload.read_bytes() == before and not marker.exists()


# -- no unpickling, enforced while every command runs ----------------------------------------------


# Who may unpickle in this process: the local process pool's messages between a sweep and its
# workers, and numba's cache and serialization of its own compiled kernels (UMAP's), kept in its
# installation directory. Neither ever reads a file of a run.
ALLOWED_UNPICKLERS = ("/concurrent/futures/", "/multiprocessing/", "/numba/")


@pytest.fixture
def unpickling_fails():
    """While the test runs, any unpickling of a global in this process (the "pickle.find_class" audit
    event: what every code-running pickle needs) raises, and is recorded, unless it is called from
    ALLOWED_UNPICKLERS. Audit hooks cannot be removed; this one is switched off when the test ends."""
    seen, active = [], [True]

    def hook(event, args):
        if not (active[0] and event == "pickle.find_class"):
            return
        frame = sys._getframe(1)
        while frame is not None:
            if any(part in frame.f_code.co_filename for part in ALLOWED_UNPICKLERS):
                return
            frame = frame.f_back
        seen.append(args)
        raise RuntimeError(f"unpickling {args} while no-unpickling is enforced")

    sys.addaudithook(hook)
    yield seen
    active[0] = False


def test_the_audit_hook_catches_unpickling_by_any_route(unpickling_fails, tmp_path):
    import importlib

    marker = tmp_path / "code-ran"
    torch.save(RunsCode(marker), tmp_path / "payload.pt")  # a torch file; the scanner above misses these two loads
    for load in (lambda: importlib.import_module("pickle").loads(importlib.import_module("pickle").dumps(RunsCode(marker))),
                 lambda: torch.serialization.load(tmp_path / "payload.pt", weights_only=False)):
        with pytest.raises(RuntimeError, match="while no-unpickling is enforced"):
            load()
    assert len(unpickling_fails) == 2 and not marker.exists()


# Every file type of a run and a sweep, and the commands that read them.
PLANTED = ["config.json", "metrics.jsonl", "checkpoints/step_00000003.safetensors", "scores/step_00000003_ddim5.json",
           "scores/step_00000003_ddim5.npz", "probes/step_00000003.json", "probes/step_00000003.npz",
           "sweep.json"]  # the files diffrep reads (phases.json, tables and reports it only writes)
COMMANDS_OVER_FILES = {
    "train --resume": lambda run, sweep: ["train", "--resume", run, "--quiet"],
    "sample": lambda run, sweep: ["sample", run, "--checkpoint", "3"],
    "score": lambda run, sweep: ["score", run, "--checkpoints", "3"],
    "probe": lambda run, sweep: ["probe", run, "--checkpoints", "3"],
    "demo": lambda run, sweep: ["demo", "--run-dir", run, "--quiet"],
    "aggregate": lambda run, sweep: ["aggregate", sweep, "--out", Path(sweep) / "table.csv"],
    "sweep --resume": lambda run, sweep: ["sweep", "--resume", sweep, "--quiet"],
}


@pytest.fixture(scope="module")
def scored_sweep(tmp_path_factory) -> Path:
    """A sweep of one finished tiny run, scored and probed at steps 0, 1, 3."""
    base = make_config("tiny", {"training.steps": 3})
    points = expand_grid(base, {}, [0])
    sweep = prepare_sweep_dir(tmp_path_factory.mktemp("planted") / "sweep", base, {}, [0], [points[0][0]])
    train(points[0][1], RunDir.create(sweep / "runs" / points[0][0], points[0][1]), quiet=True)
    return sweep


@pytest.mark.parametrize("planted", PLANTED)
def test_no_command_unpickles_a_pickle_planted_in_any_run_file(planted, scored_sweep, unpickling_fails, tmp_path,
                                                                capsys):
    import pickle as pickle_module  # to make the payload only: diffrep itself never imports it

    marker = tmp_path / "code-ran"
    for command, argv in COMMANDS_OVER_FILES.items():
        sweep = tmp_path / "sweep"
        shutil.rmtree(sweep, ignore_errors=True)
        shutil.copytree(scored_sweep, sweep)
        (run,) = (sweep / "runs").iterdir()
        target = (sweep if planted == "sweep.json" else run) / planted
        assert target.exists(), planted
        target.write_bytes(pickle_module.dumps(RunsCode(marker)))
        capsys.readouterr()
        code = main([str(a) for a in argv(str(run), str(sweep))])
        err = capsys.readouterr().err
        # done; or one line naming the damaged file (2), or the failed run of a sweep (1)
        assert code in (0, 1, 2), (command, planted, code, err)
        assert "Traceback" not in err, (command, planted, err)
    assert unpickling_fails == [] and not marker.exists()


# -- reports escape every string --------------------------------------------------------------

INJECTED = ["<script>alert('preset')</script>", "<img src=x onerror=alert(1)>", '<b onmouseover="alert(2)">']
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "b", "i", "ul", "li", "img", "table",
                "tr", "th", "td", "pre", "code", "div", "span", "details", "summary", "a",
                "section", "input", "canvas", "script"}  # the checkpoint explorer's
EXPLORER_JS = resources.files("diffrep.report").joinpath("explorer.js").read_text()


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()  # convert_charrefs: the text comes back unescaped, as a browser shows it
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict, str]] = []  # (attributes, the script's text)
        self._script: dict | None = None  # the attributes of the <script> being read
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            if not self.scripts or self.scripts[-1][0] is not self._script:
                self.scripts.append((self._script, ""))  # an empty script
            self._script = None

    def handle_data(self, data):
        if self._script is not None:  # the parser hands a script's text over whole, up to </script>
            self.scripts.append((self._script, data))
        else:
            self.text.append(data)


def assert_escaped(report: Path, strings: list[str]) -> None:
    page = Page(report.read_text())
    assert page.tags, "no markup parsed"
    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS, {tag for tag, _ in page.tags} - ALLOWED_TAGS
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)  # no injected event handler
        if tag == "img":
            assert set(attrs) <= {"alt", "src"} and attrs["src"].startswith("data:image/png;base64,")
    text = "".join(page.text)
    for s in strings:
        assert s in text, f"{s!r} is not shown as text"  # it is in the page, escaped
    # The only scripts: the explorer's own code, and its data as JSON, which holds the strings as data
    # and cannot end its element early (a "</script" in it would have split it and failed the parse).
    if page.scripts:
        (data_attrs, data), (code_attrs, code) = page.scripts
        assert data_attrs == {"type": "application/json", "id": "explorer-data"} and code_attrs == {}
        assert code == EXPLORER_JS
        assert "<" not in data and ">" not in data and "&" not in data
        held = _strings(json.loads(data))
        assert any(s in value for s in strings for value in held)  # e.g. the run's name, as data


def _strings(value) -> list[str]:
    """Every string in a parsed JSON value."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]


def test_the_run_report_escapes_config_strings_and_the_run_name(tmp_path, capsys):
    run = tmp_path / INJECTED[2]
    assert main(["train", "tiny", "--run-dir", str(run), "--quiet", "--set", "training.steps=3",
                 "--set", f"preset={INJECTED[0]}"]) == 0
    assert RunDir(run).config().preset == INJECTED[0]
    assert main(["demo", "--run-dir", str(run), "--quiet"]) == 0
    assert_escaped(run / "report.html", [INJECTED[0], INJECTED[2]])


def test_the_sweep_report_escapes_grid_values_and_the_sweep_name(tmp_path, capsys):
    base = make_config("tiny", {"training.steps": 3, "probe.during_training": False})
    grid = {"preset": INJECTED[:2]}
    points = expand_grid(base, grid, [0])
    sweep = prepare_sweep_dir(tmp_path / INJECTED[2], base, grid, [0], [name for name, _ in points])
    for name, cfg in points:  # trained here: no worker process needed
        train(cfg, RunDir.create(sweep / "runs" / name, cfg), quiet=True)
    assert main(["sweep", "--resume", str(sweep), "--quiet"]) == 0
    assert_escaped(sweep / "report.html", INJECTED)
