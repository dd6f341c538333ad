"""`vstyle batch`: many inputs, one bad one; long videos split into chunks; local Ray."""

from __future__ import annotations

import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import pytest

from conftest import FAST, frames, run_cli, write_gif, write_mp4
from vstyle import media
from vstyle.batch import OVERLAP, chunk_jobs


@pytest.fixture
def three_clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_mp4(folder / "a.mp4", frames(4))
    write_gif(folder / "b.gif", frames(3), [60, 60, 120])
    good = (folder / "a.mp4").read_bytes()
    (folder / "c.mp4").write_bytes(good[: len(good) // 3])  # truncated: corrupt
    return folder


def check_batch(result, out):
    assert result.returncode == 1, result.stderr
    failures = [l for l in result.stderr.splitlines() if l.startswith("failed:")]
    assert len(failures) == 1 and "c.mp4" in failures[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a-style.mp4", "b-style.gif"]
    assert media.gif_info(out / "b-style.gif")[1] == [60, 60, 120]


def test_batch_one_bad_input_does_not_stop_the_others(three_clips, style, tmp_path):
    out = tmp_path / "out"
    result = run_cli("batch", three_clips, style, "-o", out, *FAST)
    check_batch(result, out)
    again = run_cli("batch", three_clips, style, "-o", out, *FAST[:-1])  # finished: skipped
    assert again.returncode == 1 and again.stderr.count("│ skipped") == 2


def test_batch_on_local_ray(three_clips, style, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = run_cli("batch", three_clips, style, "-o", out, "--ray", *FAST, timeout=600)
    check_batch(result, out)


def test_chunks_overlap_and_cover_every_frame(tmp_path):
    jobs = chunk_jobs(tmp_path / "in.mp4", tmp_path / "out.mp4", n_frames=23, chunk=10)
    assert [j.frame_range for j in jobs] == [(0, 10), (10 - OVERLAP, 20), (20 - OVERLAP, 23)]
    kept = [f for j in jobs for f in range(j.frame_range[0] + j.keep_from, j.frame_range[1])]
    assert kept == list(range(23))


def with_audio(video, path):
    """Mux a sine tone (a little shorter than the video, as real tracks often are) into it."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(video),
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.9", "-c:v", "copy",
                    "-c:a", "aac", str(path)], check=True)
    return path


def test_chunked_run_matches_an_unchunked_one(style, tmp_path):
    clip = with_audio(write_mp4(tmp_path / "v.mp4", frames(12)), tmp_path / "long.mp4")
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    assert run_cli("batch", clip, style, "-o", whole, *FAST).returncode == 0
    result = run_cli("batch", clip, style, "-o", chunked, "--chunk-frames", 5, "--workers", 2,
                     *FAST)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in chunked.iterdir()) == ["long-style.mp4"]  # chunks cleaned up
    a, b = whole / "long-style.mp4", chunked / "long-style.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(b))[0] == 12
    meta_a, meta_b = iio.immeta(a), iio.immeta(b)
    assert meta_b["fps"] == meta_a["fps"] == pytest.approx(12)
    assert meta_b["audio_codec"] == meta_a["audio_codec"]
    assert meta_b["duration"] == pytest.approx(meta_a["duration"], abs=0.05)
