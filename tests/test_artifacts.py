import os
import stat

import pytest
import torch

from hspace.artifacts import atomic_write, load_tensors, save_tensors


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.safetensors"
    save_tensors(path, {"w": torch.ones(2)}, kind="test", note="first")

    def crash(tmp):
        open(tmp, "wb").write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    tensors, meta = load_tensors(path, kind="test")
    assert torch.equal(tensors["w"], torch.ones(2)) and meta["note"] == "first"
    assert os.listdir(tmp_path) == ["a.safetensors"]


def test_written_files_get_umask_permissions_not_mkstemp_ones(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_tensors(tmp_path / "b.safetensors", {"w": torch.zeros(1)}, kind="test")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_wrong_kind_is_named(tmp_path):
    path = save_tensors(tmp_path / "c.safetensors", {"w": torch.zeros(1)}, kind="shift_block")
    with pytest.raises(ValueError, match="holds shift_block, not model"):
        load_tensors(path, kind="model")
