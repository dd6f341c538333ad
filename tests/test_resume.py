"""Long runs: stopped by a signal, resumed by running the same command again; a soak test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, scene, write_mp4
from vstyle import media


def start_cli(*args) -> subprocess.Popen:
    env = {**os.environ, "VSTYLE_WEIGHTS": "random"}
    # Ctrl-C as at a terminal: a suite started in the background (`cmd &` in a script) hands
    # its children SIGINT ignored, and Python then never raises KeyboardInterrupt for it
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def stop_and_resume(tmp_path: Path, n_frames: int, stop_at: int, sig: int, size: int) -> None:
    clip = write_mp4(tmp_path / "long.mp4", [scene(t % 24, 64, 48) for t in range(n_frames)])
    style = ROOT / "samples" / "style.jpg"
    out = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.vstyle-work"
    args = [clip, style, "-o", out, "--size", size, "--iterations", 2, "--first-iterations", 2,
            "--min-iterations", 0, "--quiet"]
    proc = start_cli(*args)
    try:
        wait_for(work / f"{stop_at:05d}.png", proc, timeout=120 + n_frames)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed: leave no run behind
            proc.kill()
            proc.communicate()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "run the same command again to resume" in err and "Traceback" not in err
    kept = sorted(work.glob("*.png"))
    assert stop_at <= len(kept) < n_frames and not out.exists()
    assert [p.name for p in kept] == [f"{i:05d}.png" for i in range(1, len(kept) + 1)]
    assert not list(work.glob(".*tmp"))  # no half-written frame

    again = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args[:-1])],
                           env={**os.environ, "VSTYLE_WEIGHTS": "random"},
                           capture_output=True, text=True, timeout=3600)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(kept)} of {n_frames} frames reused" in again.stderr
    assert media.open_source(out).n_frames == n_frames  # none missing, none twice
    assert not work.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_keeps_finished_frames_and_the_same_command_resumes(tmp_path, sig):
    stop_and_resume(tmp_path, n_frames=12, stop_at=3, sig=sig, size=32)


@pytest.mark.slow
def test_soak_2000_frames_killed_halfway_and_resumed(tmp_path):
    stop_and_resume(tmp_path, n_frames=2000, stop_at=1000, sig=signal.SIGTERM, size=48)
