"""When packing several runs on one GPU pays (jackpot.machine.gpu_sharing): the launcher's share and MPS's pipe."""

from __future__ import annotations

import pytest

from jackpot.machine.gpu_sharing import mps_running, packed_jobs_per_gpu, packing_warning


@pytest.mark.parametrize(("share", "address", "per_gpu"), [
    (0.25, None, 4.0), (0.5, "local", 2.0), (1, None, None), (2, None, None), (0, None, None), (None, None, None),
    (0.25, "auto", None),  # a cluster: its nodes run the jobs, this one cannot tell whether they run MPS
    (True, None, None), ("0.25", None, None),
])
def test_packed_jobs_per_gpu(share, address, per_gpu) -> None:
    assert packed_jobs_per_gpu(share, address) == per_gpu


def test_mps_is_found_by_its_control_pipe(tmp_path) -> None:
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    assert not mps_running(env)
    assert "no control pipe in " + str(tmp_path) in packing_warning(0.25, None, env)
    (tmp_path / "control").touch()
    assert mps_running(env) and packing_warning(0.25, None, env) is None
    assert packing_warning(1, None, {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "absent")}) is None
