"""The sweep-wide torch.compile cache: versioned folder under paths.cache_dir, a user's own setting wins."""

from __future__ import annotations

import sys

import torch

from jackpot.machine.compile_cache import compile_cache_dir, use_shared_compile_cache


def test_runs_share_a_versioned_folder_under_the_cache_dir(tmp_path):
    env: dict[str, str] = {}
    folder = use_shared_compile_cache(tmp_path / "cache", env)
    assert folder == compile_cache_dir(tmp_path / "cache") and folder.is_dir()
    assert folder.parent == tmp_path / "cache" / "compile"
    assert torch.__version__.replace("+", "_") in folder.name
    assert f"py{sys.version_info.major}{sys.version_info.minor}" in folder.name
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(folder) and env["TRITON_CACHE_DIR"] == str(folder / "triton")
    assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert use_shared_compile_cache(tmp_path / "cache", {}) == folder  # a second run: the same folder


def test_a_users_own_cache_dir_wins(tmp_path):
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}
    assert use_shared_compile_cache(tmp_path / "cache", env) == tmp_path / "mine"
    assert env == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")} and not (tmp_path / "cache").exists()
