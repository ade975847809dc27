"""The README's Python examples run as written (in order, one namespace), against the data folder."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.needs_data
def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks()
    assert len(blocks) >= 5  # the quick example, theory pipeline, measured file, data-driven start, new prior
    monkeypatch.chdir(tmp_path)  # the examples write out.h5 into the working folder
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    # what the examples claim: the quick example wrote its result, the reconstructions are finite, the
    # measured cut was converted to momentum, and the new prior is a working energy term
    assert (tmp_path / "out.h5").is_file()
    for name in ("rec", "start"):
        assert np.all(np.isfinite(np.asarray(namespace[name].energies if name == "start" else
                                             namespace[name].bands.energies)))
    assert namespace["kmap"].dims[0] != namespace["bm"].dims[0]  # angle axis replaced by momentum
    printed = capsys.readouterr().out
    assert printed.count("RMSE (meV)") == 2  # both summaries against a truth were printed
