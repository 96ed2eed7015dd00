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


def test_shipped_runs_open_and_name_their_lineage():
    """Every shipped run opens; a refined one names, in its config and in each part's embedded config, another
    shipped run as ``init_from``, so ``--init-from NAME`` reproduces it; labels and the app's ranking fit its K."""
    import json

    from safetensors import safe_open

    from hspace.presets import SHIPPED_RUNS
    from hspace.run import load_run, read_labels

    assert "default" in SHIPPED_RUNS
    for name, folder in SHIPPED_RUNS.items():
        run = load_run(name)
        assert run.name == name
        parent = run.config.init_from
        assert parent is None or (parent in SHIPPED_RUNS and parent != name), (name, parent)
        for part in ("shift_block", "reconstructor", "discriminator"):
            with safe_open(str(folder / f"{part}.safetensors"), "pt") as f:
                assert json.loads(f.metadata()["config"]).get("init_from") == parent, (name, part)
        assert all(0 <= k < run.config.K for k in read_labels(folder)), name
        ranking = json.loads((folder / "eval" / "results.json").read_text())["ranking"]
        assert sorted(ranking) == list(range(run.config.K)), name
