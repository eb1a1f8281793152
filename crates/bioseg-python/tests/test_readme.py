"""The README's Python example runs as written (from a folder laid out like the repository's,
with `models/` and `../shared/data/isbi2012` beside it)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def test_the_readme_example_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    model = ROOT / "models" / "isbi2012_membrane_unet.onnx"
    shared = ROOT.parent / "shared"
    if not (shared / "data" / "isbi2012" / "membrane" / "test" / "image" / "0.png").is_file():
        pytest.skip(f"the ISBI 2012 data is not at {shared / 'data' / 'isbi2012'}")
    assert model.is_file(), model
    work = tmp_path / "repo"
    work.mkdir()
    (work / "models").symlink_to(ROOT / "models")
    (tmp_path / "shared").symlink_to(shared)
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "membrane" in run.stdout and (work / "membranes.png").is_file()
    share = float(re.search(r"([\d.]+)% membrane", run.stdout).group(1))
    assert 5 < share < 50, run.stdout  # an EM section is mostly cells, with thin membranes
    assert np.isfinite(share)
