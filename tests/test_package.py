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
