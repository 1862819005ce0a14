"""A finished `python train.py` skips the interpreter's teardown (jackpot.machine.process_exit), and loses
nothing by it: its exit code, its buffered output and its log lines all come out; an uncaught error still
tears down as usual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = '''
import logging, sys
from jackpot.machine.process_exit import exit_without_teardown

class TornDown:
    """Writes its file when the interpreter's teardown frees the module's globals (builtins are gone by then)."""
    def __del__(self, _open=open, _path=sys.argv[2]):
        with _open(_path, "w") as file:
            file.write("torn down")

marker = TornDown()
logging.basicConfig(filename=sys.argv[3], level=logging.INFO)

def main():
    sys.stdout.write("x" * 100_000 + "END\\n")  # block-buffered: a pipe, not a terminal
    logging.getLogger("job").info("logged before exit")
    ending = sys.argv[1]
    if ending == "exit3":
        sys.exit(3)
    if ending == "message":
        sys.exit("a message instead of a code")
    if ending == "error":
        raise ValueError("an uncaught error")

if __name__ == "__main__":
    with exit_without_teardown():
        main()
'''


@pytest.mark.parametrize(("ending", "code", "torn_down", "on_stderr"), [
    ("return", 0, False, ""),
    ("exit3", 3, False, ""),
    ("message", 1, False, "a message instead of a code"),
    ("error", 1, True, "ValueError: an uncaught error"),
])
def test_a_finished_main_keeps_its_code_output_and_logs_and_skips_the_teardown(tmp_path: Path, ending: str,
                                                                               code: int, torn_down: bool,
                                                                               on_stderr: str) -> None:
    script, marker, log = tmp_path / "job.py", tmp_path / "torn_down", tmp_path / "job.log"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), ending, str(marker), str(log)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "x" * 100_000 + "END\n"
    assert log.read_text().strip() == "INFO:job:logged before exit"
    assert on_stderr in proc.stderr
    assert marker.exists() == torn_down  # an uncaught error tears down as usual; the teardown ran there
