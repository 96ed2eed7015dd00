"""The package itself: imports without optional extras, and the command is installed."""

import subprocess
import sys


def test_import_without_diffusers():
    code = (
        "import sys; sys.modules['diffusers'] = None\n"  # makes `import diffusers` raise ImportError
        "import hspace, torch\n"
        "m = hspace.load_model('tiny')\n"
        "x = hspace.sample(m, torch.randn(1, 1, 16, 16), hspace.uniform_timesteps(2))\n"
        "from hspace.backends.diffusers_unet import DiffusersUNet\n"
        "try:\n    DiffusersUNet(None)\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'hspace[diffusers]'" in out


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "hspace", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("discover", "train-dm", "bench"):
        assert command in out


def test_front_ends_do_not_import_each_other():
    """show, edit, mos, evaluate, export and the app read runs through run.py and draw through viz.py, never each
    other (the app is app.py, its Gradio wiring, over app_state.py, its logic)."""
    import ast
    from pathlib import Path

    front_ends = {"show", "edit", "mos", "evaluate", "export", "app", "app_state"}
    package = Path(__file__).resolve().parents[1] / "hspace"
    for name in sorted(front_ends):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
        }
        imported |= {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level and not node.module
            for alias in node.names
        }
        own = {"app", "app_state"} if name.startswith("app") else {name}
        assert not imported & (front_ends - own), f"{name}.py imports {sorted(imported & front_ends)}"
