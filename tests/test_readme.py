"""The README's Python API example runs as written (in a temporary folder)."""

import re
from pathlib import Path


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert 0 <= float(printed[0]) <= 1 and (tmp_path / "runs" / "notebook" / "probes" / "phases.json").is_file()
