"""The README's Python example runs as written (docs that drift from the code are bugs)."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    from hspace import presets

    if not presets.shipped_path("default").exists():
        pytest.skip("the default model is not shipped in this checkout")
    block = re.search(r"## In Python\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["edited"].shape == scope["plain"].shape == (4, 1, 32, 32)
    assert not torch.equal(scope["edited"], scope["plain"])
    assert scope["x_T_real"].shape == scope["plain"].shape
