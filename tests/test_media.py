"""media.py: decoding every input kind, encoding every output kind, timing, palettes, errors."""

from __future__ import annotations

import re
import io
import shutil
import subprocess
import sys
import warnings
import weakref
from dataclasses import replace
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from conftest import write_gif
import vstyle
from vstyle import media
from vstyle.errors import VStyleError, VStyleWarning, name_options_as_flags
from vstyle.media import Timing

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def moving_square(n: int, w: int = 48, h: int = 32) -> list[np.ndarray]:
    """A smooth gradient with a white square sliding right: easy to palettize, easy to see."""
    frames = []
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, w)[None, :]
        frame[..., 1] = np.linspace(40, 200, h)[:, None]
        frame[..., 2] = 90
        x = (3 * i) % (w - 8)
        frame[10:18, x:x + 8] = 255
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """An input video made without media.py, so the round trips test media.py against ffmpeg."""
    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1,
                                         pix_fmt_out="yuv444p", ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def probe(path: Path) -> str:
    """ffmpeg's description of a file (its stream lines), without ffprobe."""
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True).stderr


def stream_seconds(path: Path, stream: str) -> float:
    """Decode one stream to nowhere; the last time= ffmpeg reports is its length."""
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-map", stream, "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", log)[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def shared(name: str) -> Path:
    path = SHARED / "clips" / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


# --- timing and sizes ----------------------------------------------------------------------------

def test_timing_sliced():
    timing = Timing(1000 * 3 / 100, [20, 30, 50], loop=2)
    first = timing.sliced(0, 2)
    assert first.durations_ms == [20, 30] and first.fps == pytest.approx(40.0) and first.loop == 2
    assert Timing(24.0, None).sliced(0, 5).fps == 24.0


def test_fps_resamples_a_video_to_fewer_frames_of_the_same_length(tmp_path):
    # 12 distinct frames at 12 fps (1 s); at 4 fps every third is kept, the second still lasts
    clip = write_video(tmp_path / "in.mp4", moving_square(12), 12)
    every = list(media.open_source(clip).frames())
    source = media.open_source(clip, fps=4)
    assert (source.n_frames, source.timing.fps, source.timing.seconds(4)) == (4, 4, 1.0)
    kept = list(source.frames())
    assert [min(range(12), key=lambda i: np.abs(every[i].astype(int) - f).mean()) for f in kept] \
        == [0, 3, 6, 9]
    assert media.open_source(clip, max_frames=2, fps=4).n_frames == 2  # two of the new frames
    assert media.open_source(clip, fps=24).n_frames == 24  # above its rate: frames repeat


def test_fps_resamples_a_gif_by_the_frame_on_screen():
    assert media.gif_picks([100, 300, 100], fps=10) == [0, 1, 1, 1, 2]
    assert media.gif_picks([50, 50], fps=20) == [0, 1]
    assert media.gif_picks([20] * 10, fps=10) == [0, 5]
    # a 24 fps GIF (delays of 40 and 50 ms, on its 10 ms clock) at its own rate: every frame once
    delays = [10 * d for d in media._gif_delays(Timing(24.0, None), 24)]
    assert set(delays) == {40, 50} and media.gif_picks(delays, fps=24) == list(range(24))
    # and a 12 fps WebP (83 and 84 ms, on its 1 ms clock)
    assert media.gif_picks(media._delays(Timing(12.0, None), 12, 1), fps=12) == list(range(12))


def test_fps_resampled_gif_plays_as_long(tmp_path):
    gif = write_gif(tmp_path / "in.gif", moving_square(6), [50, 20, 20, 40, 20, 50])  # 200 ms
    source = media.open_source(gif, fps=25)
    assert source.n_frames == 5 and source.timing.durations_ms is None
    out = tmp_path / "out.gif"
    media.write_output(lambda: source.frames(), out, "gif", source.timing)
    n, durations, loop, _ = media.gif_info(out)
    assert n == 5 and durations == [40] * 5 and loop == 0  # 200 ms, as the GIF


def test_fit_size_and_resize():
    assert media.fit_size((1280, 720), 512) == (512, 288)
    assert media.fit_size((300, 600), 1200) == (600, 1200)
    assert media.fit_size((1000, 10), 100) == (100, 16)
    frame = moving_square(1)[0]
    assert media.resize(frame, (24, 16)).shape == (16, 24, 3)
    assert media.resize(frame, (96, 64)).shape == (64, 96, 3)
    assert media.resize(frame, (48, 32)) is frame


# --- GIF -----------------------------------------------------------------------------------------

def test_gif_varying_durations_and_loop_survive_exactly(tmp_path):
    durations = [20, 30, 50, 20, 30]
    out = tmp_path / "out.gif"
    media.write_output(moving_square(5), out, "gif", Timing(1000 * 5 / 150, durations, loop=0))
    n, got, loop, local = media.gif_info(out)
    assert (n, got, loop, local) == (5, durations, 0, False)
    source = media.open_source(out)
    assert source.kind == "animation" and source.n_frames == 5 and source.size == (48, 32)
    assert source.timing.durations_ms == durations and source.timing.loop == 0
    assert source.timing.fps == pytest.approx(1000 * 5 / 150)


def frame_starts_ms(path: Path) -> list[int]:
    """When each video frame of an MP4 is shown, in ms, from its packets' timestamps."""
    log = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, text=True).stdout
    assert "#tb 0: 1/1000" in log  # a millisecond clock
    return sorted(int(line.split(",")[2]) for line in log.splitlines() if not line.startswith("#"))


def test_gif_varying_durations_play_the_same_in_an_mp4(tmp_path):
    durations = [50, 20, 20, 40, 20, 30]  # a pause at each end of a swing
    gif = write_gif(tmp_path / "in.gif", moving_square(6), durations)
    source = media.open_source(gif)
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing)
    assert frame_starts_ms(out) == [sum(durations[:i]) for i in range(6)]
    assert iio.immeta(out)["duration"] == pytest.approx(0.18)  # the last frame's 30 ms too
    # uniform durations keep a constant frame rate
    media.write_output(lambda: source.frames(), out, "mp4", Timing(25.0, [40] * 6))
    assert iio.immeta(out)["fps"] == pytest.approx(25)
    assert iio.immeta(out)["duration"] == pytest.approx(0.24)


@pytest.mark.parametrize("durations", [None, [50, 100, 50]])  # constant rate, and paced
def test_mp4_colours_are_bt709_and_say_so(tmp_path, durations):
    # Players guess BT.709 for untagged HD video; ffmpeg's RGB conversion, untold, is BT.601.
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32], frame[:, 32:] = (200, 30, 30), (30, 200, 30)
    out = tmp_path / "out.mp4"
    media.write_output([frame] * 3, out, "mp4", Timing(10.0, durations), crf=0)
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                         text=True).stderr
    assert "yuv420p(tv, bt709, progressive)" in log  # matrix, primaries and transfer tagged
    yuv = subprocess.run([FFMPEG, "-v", "error", "-i", str(out), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "yuv444p", "-"], capture_output=True, check=True).stdout
    yuv = np.frombuffer(yuv, np.uint8).reshape(3, 48, 64)[:, 24, [8, 56]].astype(int)
    assert np.abs(yuv - [[73, 146], [111, 70], [202, 60]]).max() <= 1  # BT.709 (601: Y 85, 127)
    assert np.abs(iio.imread(out, index=0)[24, [8, 56]].astype(int) - [[200, 30, 30],
                                                                     [30, 200, 30]]).max() <= 3


@pytest.mark.parametrize("size, matrix", [((1280, 720), "bt709"), ((640, 360), "bt470bg")])
def test_untagged_video_is_read_in_the_colours_players_show(tmp_path, size, matrix):
    # A video that names no YUV matrix: players read HD as BT.709, SD as BT.601 (ffmpeg: always
    # BT.601). Written here with the matrix a player would assume, then untagged.
    w, h = size
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :w // 2], frame[:, w // 2:] = (200, 30, 30), (30, 200, 30)
    clip = tmp_path / "untagged.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                    f"{w}x{h}", "-r", "10", "-i", "-", "-vf", f"scale=out_color_matrix={matrix}:"
                    "out_range=tv,format=yuv420p,setparams=colorspace=unknown:range=unknown",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(clip)],
                   input=frame.tobytes() * 2, check=True)
    decoded = next(media.open_source(clip).frames())
    assert np.abs(decoded[h // 2, [w // 4, 3 * w // 4]].astype(int) - [[200, 30, 30],
                                                                      [30, 200, 30]]).max() <= 3


@pytest.mark.parametrize("tags, assumed", [
    ("yuv420p(progressive)", "bt709"), ("yuv420p", "bt709"),
    ("yuv420p(tv, unknown/bt709/bt709, progressive)", "bt709"),  # primaries, transfer only
    ("yuv420p(tv, bt709, progressive)", ""), ("yuv420p(tv, bt709/unknown/unknown)", ""),
    ("yuvj420p(pc, bt470bg/bt470bg/smpte170m)", ""), ("rgb24", "")])
def test_which_hd_videos_name_no_matrix(tags, assumed):
    assert media._assumed_matrix(tags, (1920, 1080)) == assumed


def test_a_variable_rate_video_keeps_its_length(tmp_path):
    durations = [120, 20, 20, 20, 120, 20, 20, 20]  # 360 ms: 22.2 fps on average
    vfr = tmp_path / "vfr.mp4"
    media.write_output(moving_square(8), vfr, "mp4", Timing(0, durations))
    source = media.open_source(vfr)
    assert source.n_frames == 8 and source.timing.seconds(8) == pytest.approx(0.36, abs=0.005)
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing)
    assert iio.immeta(out)["duration"] == pytest.approx(0.36, abs=0.01)


def test_a_short_variable_rate_video_keeps_its_length_too(tmp_path):
    # every other frame, then all: 15 frames in 1 s, which ffmpeg states as 13.64 fps (1.1 s,
    # 1.4 frames longer than its sound)
    vfr = tmp_path / "vfr.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x36:rate=20:duration=1", "-vf",
                    "select='gte(n\\,10)+not(mod(n\\,2))'", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    assert iio.immeta(vfr)["fps"] == pytest.approx(13.64, abs=0.01)
    source = media.open_source(vfr)
    assert source.n_frames == 15 and source.timing.seconds(15) == pytest.approx(1.0, abs=0.005)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_max_frames_reads_only_the_frames_it_uses(tmp_path, suffix):
    # a slow start and a fast end: the first four frames last 0.4 s, the clip's average rate
    # (21.4 fps) would squeeze them into 0.19 s, out of step with their sound (and ffmpeg's
    # own end time for the first four of a .mkv or .ts says 0.1 s)
    made = tmp_path / "vfr.mp4"
    media.write_output(moving_square(12), made, "mp4", Timing(0, [100] * 4 + [20] * 8))
    vfr = tmp_path / f"in{suffix}"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-i", str(made), "-c", "copy", str(vfr)],
                   check=True)
    source = media.open_source(vfr, max_frames=4)
    assert source.n_frames == 4 and source.timing.seconds(4) == pytest.approx(0.4, abs=0.005)
    assert len(list(source.frames())) == 4


def test_a_phone_video_stored_sideways_comes_out_upright_and_quietly(tmp_path):
    made = tmp_path / "made.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x36:rate=10",
                    "-frames:v", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(made)],
                   check=True)
    sideways = tmp_path / "phone.mp4"  # the same pictures, flagged to be shown turned 90 degrees
    subprocess.run([FFMPEG, "-y", "-v", "error", "-display_rotation", "90", "-i", str(made), "-c",
                    "copy", str(sideways)], check=True)
    source = media.open_source(sideways)
    assert source.size == (36, 64) and [f.shape for f in source.frames()] == [(64, 36, 3)] * 4
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing)
    assert iio.immeta(out)["size"] == (36, 64)
    # imageio-ffmpeg's warning about the turn is not shown (outside pytest, whose log handler
    # would take it: without one, Python prints a library's warnings to stderr)
    script = f"from vstyle import media; list(media.open_source({str(sideways)!r}).frames())"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and "frame size" not in run.stderr, run.stderr


def test_an_aspect_set_by_the_container_wins(tmp_path):
    made = tmp_path / "made.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=10",
                    "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(made)],
                   check=True)
    remuxed = tmp_path / "wide.mkv"  # the stream says square pixels, the container 16:9
    subprocess.run([FFMPEG, "-y", "-v", "error", "-i", str(made), "-c", "copy", "-aspect", "16:9",
                    str(remuxed)], check=True)
    assert media.open_source(remuxed).size == (43, 24)


@pytest.mark.parametrize("turn", [0, 90])
def test_wide_pixels_are_shown_as_players_show_them(tmp_path, turn):
    dvd = tmp_path / "dvd.mp4"  # 32x36 stored pixels, each twice as wide as high: 16:9 shown
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x36:rate=10",
                    "-vf", "setsar=2", "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(dvd)], check=True)
    if turn:
        subprocess.run([FFMPEG, "-y", "-v", "error", "-display_rotation", str(turn), "-i",
                        str(dvd), "-c", "copy", str(tmp_path / "turned.mp4")], check=True)
        dvd = tmp_path / "turned.mp4"
    source = media.open_source(dvd)
    size = (64, 36) if not turn else (36, 64)
    assert source.size == size and [f.shape[1::-1] for f in source.frames()] == [size] * 2
    assert media.fit_size(source.size, 32) == ((32, 18) if not turn else (18, 32))


@pytest.mark.parametrize("suffix, codec", [(".ts", "libx264"), (".mpg", "mpeg2video"),
                                          (".wmv", "wmv2"), (".m4v", "libx264")])
def test_other_video_containers_open(tmp_path, suffix, codec):
    clip = tmp_path / f"clip{suffix}"  # .ts starts its clock at 1.4 s, not 0
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=duration=1", "-frames:v", "10", "-c:v", codec,
                    "-pix_fmt", "yuv420p", "-shortest", str(clip)], check=True)
    source = media.open_source(clip)
    assert (source.n_frames, source.timing.fps, source.size, source.has_audio) == \
        (10, 25, (64, 48), True)
    assert len(list(source.frames())) == 10


def test_a_video_that_starts_after_its_sound_keeps_its_rate(tmp_path):
    made = tmp_path / "made.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=duration=3", "-frames:v", "50", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(made)], check=True)
    late = tmp_path / "late.mp4"  # the picture starts 0.5 s into the sound (common in remuxes)
    subprocess.run([FFMPEG, "-y", "-v", "error", "-itsoffset", "0.5", "-i", str(made), "-i",
                    str(made), "-map", "0:v", "-map", "1:a", "-c", "copy", str(late)], check=True)
    source = media.open_source(late)
    assert source.n_frames == 50 and source.timing.fps == 25


def test_gif_at_24_fps_has_an_exact_total(tmp_path):
    out = tmp_path / "out.gif"
    media.write_output(lambda: iter(moving_square(12)), out, "gif", Timing(24.0, None))
    n, durations, loop, _ = media.gif_info(out)
    assert n == 12 and sum(durations) == 500  # 12 / 24 s, to the centisecond
    assert set(durations) == {40, 50}  # spread rounding, not 40 ms truncation (a fast clip)


@pytest.mark.parametrize("loop", [-1, 3])
def test_gif_loop_count(tmp_path, loop):
    out = tmp_path / "out.gif"
    media.write_output(moving_square(3), out, "gif", Timing(10.0, None, loop=loop))
    assert media.gif_info(out)[2] == loop
    with Image.open(out) as image:  # Pillow agrees
        assert image.info.get("loop") == (None if loop == -1 else loop)


def test_gif_one_global_palette_every_frame_kept_and_faithful(tmp_path):
    frames = moving_square(8)
    frames[4] = frames[3].copy()  # identical neighbours must not be merged or dropped
    out = tmp_path / "out.gif"
    media.write_output(frames, out, "gif", Timing(10.0, None), gif_dither="bayer")
    n, durations, _, local = media.gif_info(out)
    assert n == 8 and durations == [100] * 8 and not local
    decoded = [frame[..., :3] for frame in iio.imiter(out, plugin="pillow")]
    assert len(decoded) == 8
    score = min(psnr(a, b) for a, b in zip(frames, decoded))
    print(f"GIF PSNR (worst frame): {score:.1f} dB")
    assert score > 25


@pytest.mark.parametrize("dither", ["sierra2_4a", "floyd_steinberg", "none"])
def test_gif_dithers(tmp_path, dither):
    out = tmp_path / "out.gif"
    media.write_output(moving_square(3), out, "gif", Timing(10.0, None), gif_dither=dither)
    assert media.gif_info(out)[0] == 3


def test_gif_real_clip_keeps_its_timing(tmp_path):
    source = media.open_source(shared("newtonscradle.gif"))
    assert (source.kind, source.n_frames, source.size, source.timing.loop) == ("animation", 36, (200, 150), 0)
    assert min(source.timing.durations_ms) == 20 and max(source.timing.durations_ms) == 50
    out = tmp_path / "cradle.gif"
    media.write_output(lambda: source.frames((100, 75)), out, "gif", source.timing)
    n, durations, loop, local = media.gif_info(out)
    assert (n, durations, loop, local) == (36, source.timing.durations_ms, 0, False)
    capped = media.open_source(source.path, max_frames=10)
    assert capped.n_frames == 10 and capped.timing.durations_ms == source.timing.durations_ms[:10]
    assert len(list(capped.frames())) == 10


def test_large_gif_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "LARGE_GIF_BYTES", 100)
    with pytest.warns(VStyleWarning, match="size or fps"):
        media.write_output(moving_square(2), tmp_path / "out.gif", "gif", Timing(10.0, None))


def test_gif_faster_than_browsers_play_warns(tmp_path):
    with pytest.warns(VStyleWarning, match="fps=50"):
        media.write_output(moving_square(3), tmp_path / "out.gif", "gif", Timing(100.0, None))
    assert media.gif_info(tmp_path / "out.gif")[1] == [20, 20, 20]


# --- video ---------------------------------------------------------------------------------------

def test_video_round_trip(tmp_path):
    frames = moving_square(12)
    source = media.open_source(write_video(tmp_path / "in.mp4", frames, fps=15))
    assert (source.kind, source.n_frames, source.size, source.has_audio) == ("video", 12, (48, 32), False)
    assert source.timing.fps == 15 and source.timing.durations_ms is None
    decoded = list(source.frames())
    assert len(decoded) == 12 and decoded[0].dtype == np.uint8 and decoded[0].shape == (32, 48, 3)
    assert psnr(decoded[5], frames[5]) > 30
    assert [f.shape for f in source.frames((24, 16))] == [(16, 24, 3)] * 12
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing)
    back = media.open_source(out)
    assert (back.n_frames, back.timing.fps, back.has_audio) == (12, 15, False)
    assert "yuv420p" in probe(out)


def test_odd_size_mp4_drops_the_last_row_and_column(tmp_path):
    frames = [media.resize(f, (47, 31)) for f in moving_square(5)]
    out = tmp_path / "odd.mp4"
    media.write_output(frames, out, "mp4", Timing(10.0, None), crf=23)
    back = media.open_source(out)
    assert back.size == (46, 30) and back.n_frames == 5


def test_mp4_from_the_real_clip_keeps_fps_and_audio(tmp_path):
    source = media.open_source(shared("cockatoo.mp4"), max_frames=6)
    assert (source.n_frames, source.size, source.timing.fps, source.has_audio) == (6, (1280, 720), 20, True)
    out = tmp_path / "bird.mp4"
    media.write_output(lambda: source.frames((160, 90)), out, "mp4", source.timing,
                       audio_from=source.path)
    info = probe(out)
    assert "yuv420p" in info and "20 fps" in info and "Audio: mp3" in info
    back = media.open_source(out)
    assert (back.n_frames, back.timing.fps, back.size, back.has_audio) == (6, 20, (160, 90), True)
    video, audio = stream_seconds(out, "0:v"), stream_seconds(out, "0:a")
    assert video == pytest.approx(0.3, abs=0.02)
    assert audio == pytest.approx(video, abs=0.1)  # cut to the video, not the 14 s track


def test_source_without_audio_gives_a_silent_mp4(tmp_path):
    silent = write_video(tmp_path / "in.mp4", moving_square(4), fps=8)
    source = media.open_source(silent)
    assert not source.has_audio
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing,
                       audio_from=source.path if source.has_audio else None)
    assert "Audio" not in probe(out) and media.open_source(out).n_frames == 4
    # Even handed a silent file as the audio source, the mux does not fail.
    media.write_output(lambda: source.frames(), out, "mp4", source.timing, audio_from=silent)
    assert "Audio" not in probe(out) and media.open_source(out).n_frames == 4


# --- folders and stills --------------------------------------------------------------------------

def test_folder_natural_sort_and_mixed_sizes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = moving_square(4)
    names = ["frame10.png", "frame2.png", "Frame1.PNG", "frame3.jpg"]
    for frame, name in zip(frames, names):
        Image.fromarray(frame).save(folder / name, quality=95)
    Image.fromarray(media.resize(frames[0], (96, 64))).save(folder / "frame11.png")  # larger
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"")
    write_gif(folder / "source.gif", frames, [100] * 4)  # the clip they came from: not a frame
    with pytest.warns(VStyleWarning, match="read as 5 frames; left out: source.gif"):
        source = media.open_source(folder)
    assert [p.name for p in source.files] == ["Frame1.PNG", "frame2.png", "frame3.jpg",
                                              "frame10.png", "frame11.png"]
    assert (source.kind, source.n_frames, source.size, source.timing.fps) == ("folder", 5, (48, 32), 10)
    decoded = list(source.frames())
    assert [f.shape for f in decoded] == [(32, 48, 3)] * 5
    assert np.array_equal(decoded[0], frames[2]) and np.array_equal(decoded[3], frames[0])
    (folder / "source.gif").unlink()
    assert media.open_source(folder, max_frames=2).n_frames == 2


def test_clips_beside_a_folders_frames_are_named_as_left_out(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, frame in enumerate(moving_square(2)):
        Image.fromarray(frame).save(folder / f"{i}.png")
    write_video(folder / "preview.mp4", moving_square(3), 10)
    with pytest.warns(VStyleWarning, match=r"folder .*shots is read as 2 frames; left out: "
                                           r"preview.mp4 \(stylize clips with vstyle\.batch\."
                                           r"run_batch\(\[.*shots'\], style, outdir\)\)$"):
        assert media.open_source(folder).n_frames == 2
    name_options_as_flags()  # the command line's words
    try:
        with pytest.warns(VStyleWarning, match=r"\(stylize clips with `vstyle batch .*shots "
                                               r"STYLE -o OUTDIR`\)$"):
            media.open_source(folder)
    finally:
        name_options_as_flags(False)


@pytest.mark.parametrize("kind", ["mp4", "gif", "webp", "folder"])
def test_window_decodes_exactly_its_frames(tmp_path, kind):
    frames = moving_square(10)
    path = tmp_path / f"clip.{kind}" if kind != "folder" else tmp_path / "frames"
    if kind == "folder":
        path.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{i:03d}.png")
    else:
        media.write_output(frames, path, kind, Timing(10.0, None))
    source = media.open_source(path)
    whole = list(source.frames())
    window = source.window(3, 7)
    part = list(window.frames())
    assert window.n_frames == len(part) == 4 and all(np.array_equal(a, b) for a, b in zip(part, whole[3:7]))
    assert len(list(window.window(1, 3).frames())) == 2  # a window of a window counts from its start
    assert np.array_equal(next(window.window(1, 3).frames()), whole[4])


@pytest.mark.parametrize("kind", ["mp4", "gif", "folder"])
def test_start_and_end_cut_a_clip_by_time(tmp_path, kind):
    frames = moving_square(12)  # 10 fps: frame i is on screen from i/10 s
    path = tmp_path / f"clip.{kind}" if kind != "folder" else tmp_path / "frames"
    if kind == "folder":
        path.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{i:03d}.png")
    else:
        media.write_output(frames, path, kind, Timing(10.0, None))
    whole = list(media.open_source(path, fps=10 if kind == "folder" else None).frames())
    # a video starts at its first frame from --start on, a GIF or folder at the one on screen
    first = 4 if kind == "mp4" else 3
    cut = media.open_source(path, start=0.35, end=0.8)
    part = list(cut.frames())
    assert cut.n_frames == len(part) == 8 - first
    assert all(np.array_equal(a, b) for a, b in zip(part, whole[first:8]))
    assert cut.timing.seconds(cut.n_frames) == pytest.approx((8 - first) / 10)
    capped = media.open_source(path, max_frames=2, start=0.35)  # counted from --start
    assert capped.n_frames == 2 and np.array_equal(next(capped.frames()), whole[first])
    assert media.open_source(path, start=0.35).n_frames == 12 - first  # to the end
    assert len(list(cut.window(1, 3).frames())) == 2  # a batch's chunk of a cut clip
    with pytest.raises(VStyleError, match=r"start=5 s is past the last frame of .* \(1.2 s long\): "
                                          "pass an earlier start"):
        media.open_source(path, start=5)


def test_a_video_whose_keyframes_decode_into_garbage_is_cut_from_its_start(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", moving_square(12), 10)
    whole = list(media.open_source(path).frames())
    assert media.open_source(path, start=0.35).seeks
    # as ffmpeg -xerror stops at cockatoo.mp4's first damaged frame after a seek
    monkeypatch.setattr(media, "_decodes_cleanly", lambda path, seeking: False)
    cut = media.open_source(path, start=0.35, end=0.8)
    assert not cut.seeks and cut.n_frames == 4
    assert all(np.array_equal(a, b) for a, b in zip(cut.frames(), whole[4:8]))


def test_cutting_the_real_clip_gives_its_own_frames():
    clip = shared("cockatoo.mp4")  # seeking into it gives damaged frames
    whole = list(media.open_source(clip, max_frames=103).frames((64, 36)))
    cut = media.open_source(clip, start=5, max_frames=3)
    assert not cut.seeks and all(np.array_equal(a, b) for a, b in zip(cut.frames((64, 36)),
                                                                 whole[100:103]))


def test_start_in_a_held_gif_frame_keeps_it_for_its_own_duration(tmp_path):
    path = tmp_path / "held.gif"
    media.write_output(moving_square(3), path, "gif", Timing(1000 * 3 / 1400, [200, 1000, 200]))
    cut = media.open_source(path, start=0.7)  # half-way through the held frame
    assert (cut.n_frames, cut.timing.durations_ms) == (2, [1000, 200])


def test_start_cuts_the_sound_with_the_pictures(tmp_path):
    video = write_video(tmp_path / "silent.mp4", moving_square(24), 12)  # 2 s
    beeping = tmp_path / "beep.mp4"  # silence but for a tone from 1.0 to 1.3 s
    subprocess.run([FFMPEG, "-y", "-v", "error", "-i", str(video), "-f", "lavfi", "-i",
                    "sine=frequency=1000:duration=2,volume=enable='not(between(t,1,1.3))':volume=0",
                    "-c:v", "copy", "-c:a", "aac", str(beeping)], check=True)
    source = media.open_source(beeping, start=0.75)
    assert source.n_frames == 15  # frames 9..23 start at or after 0.75 s
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing, audio_from=beeping,
                       audio_seek=source.seek)
    first, last = loud_times(out)
    assert 0.2 <= first <= 0.3 and 0.5 <= last <= 0.6, (first, last)
    # from past the sound's end (it stops at 1.5 s): an MP4 as long as its pictures
    short = tmp_path / "short.mp4"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-i", str(video), "-f", "lavfi", "-i",
                    "sine=duration=1.5", "-c:v", "copy", "-c:a", "libmp3lame", str(short)],
                   check=True)
    late = media.open_source(short, start=1.6)
    media.write_output(lambda: late.frames(), out, "mp4", late.timing, audio_from=short,
                       audio_seek=late.seek)
    assert late.n_frames == 4 and iio.immeta(out)["duration"] == pytest.approx(4 / 12, abs=0.03)


def loud_times(path: Path) -> tuple[float, float]:
    """When a file's sound is loud: the first and last 50 ms window above half its peak."""
    pcm = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                          "-ar", "8000", "-"], capture_output=True, check=True).stdout
    level = np.abs(np.frombuffer(pcm, np.int16).astype(float))
    loud = level[:len(level) // 400 * 400].reshape(-1, 400).mean(axis=1)
    heard = np.flatnonzero(loud > 0.5 * loud.max()) * 0.05
    return heard.min(), heard.max()


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_the_sound_keeps_to_pictures_that_start_after_it(tmp_path, suffix):
    video = write_video(tmp_path / "v.mp4", moving_square(20), 10)  # 2 s
    late = tmp_path / f"late{suffix}"  # the pictures start 0.3 s into the file
    subprocess.run([FFMPEG, "-y", "-v", "error", "-itsoffset", "0.3", "-i", str(video), "-f",
                    "lavfi", "-i", "sine=frequency=1000:duration=2.5,"
                    "volume=enable='not(between(t,1,1.3))':volume=0", "-map", "0:v", "-map",
                    "1:a", "-c:v", "copy", "-c:a", "aac", str(late)], check=True)
    whole = list(media.open_source(late).frames())
    out = tmp_path / "out.mp4"
    for start, heard in ((0, 0.7), (0.45, 0.25)):  # the tone at 1 s in the file
        source = media.open_source(late, start=start)
        assert source.seeks == (start > 0 and suffix == ".mp4")  # a TS has no index to seek by
        assert all(np.array_equal(a, b) for a, b in zip(source.frames(), whole[5 * (start > 0):]))
        media.write_output(lambda: source.frames(), out, "mp4", source.timing, audio_from=late,
                           audio_seek=source.start_time)
        assert loud_times(out)[0] == pytest.approx(heard, abs=0.06)


def test_the_sound_starts_with_the_first_frame_after_start(tmp_path):
    slow = tmp_path / "slow.mp4"  # 2 frames a second, a tone from 1.0 to 1.3 s
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=32x24:rate=2:duration=4", "-f", "lavfi", "-i",
                    "sine=frequency=1000:duration=4,volume=enable='not(between(t,1,1.3))':volume=0",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(slow)], check=True)
    source = media.open_source(slow, start=0.1)  # the picture at 0.5 s is frame 1
    assert source.n_frames == 7 and source.sound_from == pytest.approx(0.5, abs=0.01)
    out = tmp_path / "out.mp4"
    media.write_output(lambda: source.frames(), out, "mp4", source.timing, audio_from=slow,
                       audio_seek=source.sound_from)
    assert loud_times(out)[0] == pytest.approx(0.5, abs=0.06)  # with the 1.0 s picture


def test_a_long_video_is_announced_before_its_frames_are_counted(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", moving_square(12), 10)  # 1.2 s of 48x32
    monkeypatch.setattr(media, "LONG_COUNT", 48 * 32 * 1.0)  # "long" from 1 s on, here
    said = []
    assert media.open_source(path, on_notice=said.append).n_frames == 12
    assert said == ["counting the frames of clip.mp4 (0:00:01 at 48x32): ffmpeg decodes it "
                    "once through first, which takes a while for a long video"]
    for short in (dict(max_frames=8), dict(start=0.5), dict(end=0.9)):  # less is decoded
        media.open_source(path, on_notice=said.append, **short)
    assert len(said) == 1
    events = []  # stylize passes it on as a notice, before the bar starts
    with pytest.raises(VStyleError, match="style image .* not found"):
        vstyle.stylize(path, tmp_path / "missing.png", tmp_path / "out.gif",
                       on_event=events.append)
    assert [(e.kind, e.message[:22]) for e in events] == [("notice", "counting the frames of")]


def test_a_cut_that_holds_no_frame_says_so(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square(12), 10)
    with pytest.raises(VStyleError, match="no frame of video .*clip.mp4 starts between start="
                                          "0.41 s and end=0.43 s: widen the range"):
        media.open_source(path, start=0.41, end=0.43)
    assert media.open_source(path, start="0:00.35").n_frames == 8  # times as the CLI takes them
    assert vstyle.Options(start=None).validate().start == 0


def test_start_on_a_still_image_is_refused(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(moving_square(1)[0]).save(path)
    with pytest.raises(VStyleError, match="photo.png is one image: leave them out"):
        media.open_source(path, start=1)


def test_still_image_source(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(moving_square(1)[0]).save(path, quality=95)
    source = media.open_source(path)
    assert (source.kind, source.n_frames, source.size) == ("image", 1, (48, 32))
    assert [f.shape for f in source.frames((24, 16))] == [(16, 24, 3)]


def test_folder_output_replaces_only_our_own_frames(tmp_path):
    out = tmp_path / "stylized"
    media.write_output(moving_square(3), out, "folder", Timing(10.0, None))
    assert sorted(p.name for p in out.iterdir()) == [".vstyle", "00001.png", "00002.png",
                                                     "00003.png"]
    assert np.array_equal(iio.imread(out / "00002.png"), moving_square(3)[1])
    (out / ".DS_Store").write_bytes(b"\0")  # the folder was opened in a file manager
    media.write_output(moving_square(2), out, "folder", Timing(10.0, None))  # a rerun replaces it
    assert sorted(p.name for p in out.iterdir()) == [".vstyle", "00001.png", "00002.png"]
    (out / "mine.txt").write_text("keep me")
    source = media.open_source(out)
    with pytest.raises(VStyleError, match=r"stylized holds files besides vstyle's frames "
                                          r"\(mine.txt\): move them out"):
        media.check_output(out, media.Source(tmp_path / "x.mp4", "video", 3, (8, 8), Timing(1, None), False))
    with pytest.raises(VStyleError, match="besides vstyle's frames"):
        media.write_output(moving_square(2), out, "folder", source.timing)
    assert (out / "mine.txt").exists()
    # frames with our names that vstyle did not write (a user's, a camera's) are never replaced
    theirs = tmp_path / "theirs"
    media.write_output(moving_square(3), theirs, "folder", Timing(10.0, None))
    (theirs / ".vstyle").unlink()
    with pytest.raises(VStyleError, match=r"theirs holds frames without vstyle's .vstyle file "
                                          r"\(someone's own, or an older vstyle's\)"):
        media.write_output(moving_square(2), theirs, "folder", Timing(10.0, None))
    assert len(media.written_frames(theirs)) == 3
    (theirs / "notes.txt").write_text("x")
    with pytest.raises(VStyleError, match="theirs is not empty: choose a new folder"):
        media.write_output(moving_square(2), theirs, "folder", Timing(10.0, None))
    shutil.rmtree(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stylized"]


@pytest.mark.parametrize("name", ["out.png", "out.jpg"])
def test_image_output(tmp_path, name):
    out = tmp_path / name
    media.write_output(moving_square(3), out, "image", Timing(10.0, None))
    assert psnr(iio.imread(out)[..., :3], moving_square(1)[0]) > 35


# --- style images --------------------------------------------------------------------------------

def style_modes(tmp_path: Path) -> dict[str, tuple[Path, tuple[int, int, int]]]:
    """Style images in awkward modes, each with the RGB its pixel (0, 0) must load as."""
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 8), 77, np.uint8), "L").save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(rgba)  # transparent → white
    paletted = tmp_path / "palette.png"
    colours = Image.fromarray(np.full((8, 8, 3), (200, 10, 10), np.uint8))
    colours.convert("P", palette=Image.Palette.ADAPTIVE).save(paletted)
    with Image.open(paletted) as image:
        assert image.mode == "P"
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(deep)  # 16-bit grey 0.502
    floats = tmp_path / "float.tif"  # scientific and HDR tools write fractions of 1
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(floats)
    return {"grey": (grey, (77, 77, 77)), "rgba": (rgba, (255, 255, 255)),
            "palette": (paletted, (200, 10, 10)), "16-bit": (deep, (128, 128, 128)),
            "float": (floats, (128, 128, 128))}


@pytest.mark.parametrize("mode", ["grey", "rgba", "palette", "16-bit", "float"])
def test_style_images_load_as_rgb(tmp_path, mode):
    path, expected = style_modes(tmp_path)[mode]
    image = media.load_image(path)
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
    assert tuple(int(v) for v in image[0, 0]) == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("array, expected", [
    (np.full((4, 4, 3), (200, 10, 10), np.uint8), (200, 10, 10)),
    (np.full((4, 4), 77, np.uint8), (77, 77, 77)),  # grey
    (np.full((4, 4, 4), (200, 10, 10, 0), np.uint8), (255, 255, 255)),  # transparent: white
    (np.full((4, 4, 3), 0.5, np.float32), (128, 128, 128)),  # fractions of 1
    (np.pad(np.full((3, 4, 3), 0.5), ((0, 1), (0, 0), (0, 0)), constant_values=1.02),
     (128, 128, 128)),  # still fractions: a resize overshoots 1 a little
    (np.full((4, 4, 3), 128.0), (128, 128, 128)),  # floats in levels
    (np.full((4, 4, 1), 32896, np.uint16), (128, 128, 128)),  # 16-bit
    (np.full((4, 4, 3), 128, np.uint16), (128, 128, 128)),  # 8-bit levels in a uint16 array
    (np.full((4, 4, 3), -0.01), (0, 0, 0)),  # a resize's undershoot
])
def test_arrays_from_python_callers_become_rgb(array, expected):
    image = media.as_rgb(array)
    assert image.dtype == np.uint8 and image.shape == (4, 4, 3)
    assert tuple(int(v) for v in image[0, 0]) == expected


@pytest.mark.parametrize("array", [np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3)),
                                   np.zeros((0, 4, 3)), np.full((4, 4, 3), np.nan),
                                   np.array([["a"]]), np.full((4, 4, 3), 0.5 + 0.5j),
                                   np.linspace(-1, 1, 48).reshape(4, 4, 3)])
def test_arrays_that_are_no_image_are_one_line_errors(array):
    with pytest.raises(VStyleError, match="^content.*(RGB image|finite|0-255)") as error:
        media.as_rgb(array, "content")
    assert "\n" not in str(error.value)


def display_p3_profile() -> bytes:
    """littlecms's sRGB profile with Display P3's primaries (D50-adapted, as Apple's profile
    has them): a wide-gamut profile, as phone photos carry, made without a file."""
    from PIL import ImageCms
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    primaries = {b"rXYZ": (0.5151, 0.2412, -0.0011), b"gXYZ": (0.2920, 0.6922, 0.0419),
                 b"bXYZ": (0.1571, 0.0666, 0.7841)}
    for k in range(int.from_bytes(data[128:132], "big")):  # the tag table
        tag, offset = bytes(data[132 + 12 * k: 136 + 12 * k]), \
            int.from_bytes(data[136 + 12 * k: 140 + 12 * k], "big")
        if tag in primaries:  # an XYZType: 'XYZ ', 4 reserved bytes, 3 s15Fixed16 numbers
            data[offset + 8: offset + 20] = b"".join(round(v * 65536).to_bytes(4, "big",
                                                     signed=True) for v in primaries[tag])
    return bytes(data)


@pytest.mark.parametrize("kind", [".png", ".jpg"])
def test_an_image_with_a_colour_profile_is_read_in_srgb(tmp_path, kind):
    from PIL import ImageCms
    srgb = np.kron(np.array([[[200, 40, 40], [40, 180, 60], [60, 80, 200], [128, 128, 128]]],
                            np.uint8), np.ones((16, 16, 1), np.uint8))
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    photo = ImageCms.profileToProfile(Image.fromarray(srgb), ImageCms.createProfile("sRGB"), p3,
                                      outputMode="RGB")  # the same colours, as P3 pixels
    assert np.abs(np.asarray(photo).astype(int) - srgb).max() > 40  # they do differ
    path = tmp_path / f"photo{kind}"
    photo.save(path, icc_profile=display_p3_profile(), quality=100)
    centres = (8, [8, 24, 40, 56])  # inside each patch (JPEG blurs the edges between them)
    for image in (media.load_image(path), next(media.open_source(path).frames())):  # style, input
        assert np.abs(image[centres].astype(int) - srgb[centres]).max() <= 3


def test_style_image_that_is_not_an_image(tmp_path):
    path = tmp_path / "painting.jpg"
    path.write_text("hello")
    with pytest.raises(VStyleError, match=r"style image .* is not an image.*\.jpg or \.png"):
        media.load_image(path)
    with pytest.raises(VStyleError, match="not found"):
        media.load_image(tmp_path / "missing.jpg")
    buffer = io.BytesIO()
    Image.fromarray(moving_square(1)[0]).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:400])  # a download cut short
    with pytest.raises(VStyleError, match=r"style image .* is damaged or cut short \(.*\): "
                                          r"pass a \.jpg or \.png painting"):
        media.load_image(path)


# --- input errors --------------------------------------------------------------------------------

def broken_inputs(tmp_path: Path) -> dict[str, Path]:
    text_gif = tmp_path / "text.gif"
    text_gif.write_text("GIF? no, a note")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    full = write_video(tmp_path / "full.mp4", moving_square(10), fps=10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[:300])
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("x")
    unsupported = tmp_path / "clip.xyz"
    unsupported.write_text("x")
    text_webp = tmp_path / "text.webp"
    text_webp.write_text("RIFF? no, a note")
    webp = tmp_path / "full.webp"
    media.write_output(moving_square(10), webp, "webp", Timing(10.0, None))
    truncated_webp = tmp_path / "truncated.webp"
    truncated_webp.write_bytes(webp.read_bytes()[:60])  # its first frame cut short
    return {"missing": tmp_path / "missing.mp4", "empty": empty, "text_gif": text_gif,
            "truncated": truncated, "no_images": no_images, "unsupported": unsupported,
            "text_webp": text_webp, "truncated_webp": truncated_webp}


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("empty", "empty"), ("text_gif", "not a readable GIF"),
    ("truncated", "cannot be decoded"), ("no_images", "has no images"),
    ("unsupported", "unsupported extension.*\\.mp4"),
    ("text_webp", "input image .*text.webp cannot be read"),
    ("truncated_webp", "truncated.webp"),
])
def test_broken_inputs_give_one_line_errors(tmp_path, case, message):
    with pytest.raises(VStyleError, match=message) as error:
        media.open_source(broken_inputs(tmp_path)[case])
    assert "\n" not in str(error.value) and ":" in str(error.value)


def test_a_video_cut_short_after_its_index_is_read_with_a_warning(tmp_path):
    """An MP4 with its index first (faststart), whose download stopped partway: the frames that
    are there are read, and the user is told why the clip is shorter than it should be."""
    full = tmp_path / "full.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=30", "-t", "2", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(full)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert media.open_source(full).n_frames == 60
    with pytest.warns(VStyleWarning, match=r"video .*cut.mp4 is cut short .* stylizing the "
                                           r"(\d+) frames that are there") as caught:
        source = media.open_source(cut)
    assert 0 < source.n_frames < 60
    assert f"the {source.n_frames} frames" in str(caught[0].message)
    assert len(list(source.frames((80, 60)))) == source.n_frames
    there = source.n_frames
    with pytest.warns(VStyleWarning, match=f"stylizing the {there - 5} frames that are there"):
        assert media.open_source(cut, start=5 / 30, max_frames=100).n_frames == there - 5
    with warnings.catch_warnings():  # the frames asked for are all there: nothing to say
        warnings.simplefilter("error")
        assert media.open_source(cut, start=5 / 30, max_frames=3).n_frames == 3
    # past what the file holds: its index's length (2 s) is not said, the cut is
    with pytest.raises(VStyleError, match=r"start=1.9 s is past the last frame of video "
                                          r".*cut.mp4: pass an earlier start, or the complete "
                                          r"file \(this one is cut short"):
        media.open_source(cut, start=1.9)


def test_an_interlaced_video_is_deinterlaced_as_it_is_decoded(tmp_path):
    """A TV or camcorder recording: two fields, 1/50 s apart, woven into each frame, comb
    wherever something moves; decoded as it is, the painting would keep the combs."""
    h, w = 96, 128

    def at(t):  # a square moving 6 px a field
        frame = np.full((h, w, 3), 30, np.uint8)
        frame[24:72, 10 + 6 * t:40 + 6 * t] = (220, 200, 60)
        return frame
    woven = []
    for k in range(8):
        frame = at(2 * k)
        frame[1::2] = at(2 * k + 1)[1::2]  # the bottom field, a field later
        woven.append(frame)
    path = tmp_path / "tv.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-vf", "setfield=tff",
                    "-flags", "+ilme+ildct", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf",
                    "10", str(path)], input=np.stack(woven).tobytes(), check=True)
    source = media.open_source(path)
    assert source.interlaced and source.n_frames == 8 and source.timing.fps == 25

    def combing(frames):  # how much each row differs from the next, on the square's rows
        return np.abs(np.diff(np.stack(list(frames)).astype(float)[:, 24:72], axis=1)).mean()
    woven_as_is = combing(replace(source, interlaced=False).frames())
    assert combing(source.frames()) < 0.2 * woven_as_is, woven_as_is
    assert not media.open_source(write_video(tmp_path / "p.mp4", moving_square(3), 10)).interlaced


# --- WebP ----------------------------------------------------------------------------------------

def webp_info(path: Path) -> tuple[list[np.ndarray], list[int], int]:
    """An animated WebP's frames, per-frame durations (ms) and loop count, as Pillow reads them."""
    frames, durations = [], []
    with Image.open(path) as image:
        assert image.format == "WEBP"
        for i in range(image.n_frames):
            image.seek(i)
            image.load()  # the duration is known once the frame is decoded
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(image.info["duration"])
        return frames, durations, image.info["loop"]


@pytest.fixture(params=["streamed", "in memory"])
def webp_encoder(request, monkeypatch):
    """Both ways a WebP is written: ffmpeg's libwebp, or Pillow's where ffmpeg has none."""
    streams = request.param == "streamed"
    assert not streams or media._ffmpeg_writes_webp(), "imageio-ffmpeg's ffmpeg lost libwebp"
    monkeypatch.setattr(media, "_ffmpeg_writes_webp", lambda: streams)
    return request.param


def test_webp_keeps_each_duration_the_loop_and_the_colours(tmp_path, webp_encoder):
    durations = [20, 30, 50, 20, 30]
    out = tmp_path / "out.webp"
    media.write_output(moving_square(5), out, "webp", Timing(1000 * 5 / 150, durations, loop=0))
    frames, got, loop = webp_info(out)
    assert len(frames) == 5 and got == durations and loop == 0  # 0: forever
    error = np.abs(np.stack(frames).astype(int) - np.stack(moving_square(5))).mean()
    assert error < 2, error  # full colour: no palette, no dithering
    # 12 frames at 24 fps: 500 ms in all, the milliseconds spread (41 and 42)
    media.write_output(moving_square(12), out, "webp", Timing(24.0, None))
    assert sum(webp_info(out)[1]) == 500 and set(webp_info(out)[1]) == {41, 42}
    # a GIF's pause at the end (ffmpeg alone would guess the last duration: 77 ms for 1 s)
    media.write_output(moving_square(4), out, "webp", Timing(4 / 1.12, [40, 40, 40, 1000]))
    assert webp_info(out)[1] == [40, 40, 40, 1000]


def test_a_repeated_frame_is_stored_once_with_the_durations_added(tmp_path, webp_encoder):
    frames = moving_square(5)
    frames[2] = frames[3] = frames[1]
    out = tmp_path / "out.webp"
    media.write_output(frames, out, "webp", Timing(10.0, None))
    assert webp_info(out)[1] == [100, 300, 100]


@pytest.mark.parametrize("loop", [0, -1, 3])
def test_a_webp_of_frames_all_alike_is_one_frame_lasting_them_all(tmp_path, webp_encoder, loop):
    # a still shot: libwebp writes its one picture as a still image, made an animation again
    out = tmp_path / "out.webp"
    media.write_output([moving_square(1)[0]] * 5, out, "webp", Timing(10.0, None, loop))
    assert media.webp_info(out) == (1, [500], loop)
    frames, durations, _ = webp_info(out)
    assert len(frames) == 1 and durations == [500]
    assert np.abs(frames[0].astype(int) - moving_square(1)[0]).mean() < 2
    assert media.open_source(out).kind == "animation"


def test_a_webp_is_streamed_not_held_in_memory(tmp_path):
    assert media._ffmpeg_writes_webp(), "imageio-ffmpeg's ffmpeg lost libwebp"
    made, most_held = [], [0]

    def frames():  # counts the frames made so far that something still holds
        for square in moving_square(30):
            frame = square.copy()  # held by the writer alone
            most_held[0] = max(most_held[0], sum(ref() is not None for ref in made))
            made.append(weakref.ref(frame))
            yield frame
    media.write_output(frames, tmp_path / "out.webp", "webp", Timing(10.0, None))
    assert len(webp_info(tmp_path / "out.webp")[0]) == 30
    assert most_held[0] <= 3  # the first (its size), the two peeked at, then each as it comes


@pytest.mark.parametrize("gif_loop, plays", [(-1, 1), (3, 4), (65535, 65535)])
def test_webp_counts_plays_where_a_gif_counts_repeats(tmp_path, gif_loop, plays, webp_encoder):
    out = tmp_path / "out.webp"
    media.write_output(moving_square(3), out, "webp", Timing(10.0, None, loop=gif_loop))
    assert webp_info(out)[2] == plays


@pytest.mark.parametrize("loop", [0, -1, 3])
def test_an_animated_webp_opens_as_an_animation(tmp_path, loop):
    durations = [20, 30, 50, 20, 30]
    path = tmp_path / "in.webp"
    media.write_output(moving_square(5), path, "webp", Timing(1000 * 5 / 150, durations, loop))
    assert media.webp_info(path) == (5, durations, loop)  # read from its chunks
    source = media.open_source(path)
    assert (source.kind, source.n_frames, source.size) == ("animation", 5, (48, 32))
    assert source.timing.durations_ms == durations and source.timing.loop == loop
    frames = np.stack(list(source.frames()))
    assert np.abs(frames.astype(int) - np.stack(moving_square(5))).mean() < 2
    assert media.open_source(path, fps=50).n_frames == 8  # resampled like a GIF: 150 ms
    assert media.default_output(source, [Path("s.jpg")]) == tmp_path / "in-s.webp"


@pytest.mark.parametrize("default_image", [False, True])
def test_an_animated_png_opens_as_an_animation(tmp_path, default_image):
    frames = moving_square(4)
    cover = np.zeros_like(frames[0])  # a still shown by viewers without APNG: not a frame
    images = [Image.fromarray(f) for f in ([cover] if default_image else []) + frames]
    path = tmp_path / "in.png"
    durations = [20, 30, 50, 100]
    images[0].save(path, save_all=True, append_images=images[1:], loop=2,  # plays twice
                   duration=durations, default_image=default_image)
    assert media.apng_info(path) == (4, durations, 1, int(default_image))
    assert media.input_kind(path) == "animation"  # by its chunks (batch names outputs by it)
    apng = path.rename(tmp_path / "in.apng")
    assert media.open_source(apng).n_frames == 4
    path = apng.rename(path)
    source = media.open_source(path)
    assert (source.kind, source.n_frames, source.timing.durations_ms, source.timing.loop) == \
        ("animation", 4, durations, 1)
    assert all(np.array_equal(a, b) for a, b in zip(source.frames(), frames))
    assert len(list(media.open_source(path, fps=20).frames())) == 4  # 200 ms at 20 fps
    assert np.array_equal(next(source.window(2, 4).frames()), frames[2])


def test_play_counts_beyond_a_gifs_16_bits_are_kept_as_its_most(tmp_path):
    images = [Image.fromarray(f) for f in moving_square(2)]
    images[0].save(tmp_path / "a.png", save_all=True, append_images=images[1:], loop=100000)
    source = media.open_source(tmp_path / "a.png")
    assert source.timing.loop == 65535
    media.write_output(list(source.frames()), tmp_path / "a.gif", "gif", source.timing)
    assert media.gif_info(tmp_path / "a.gif")[2] == 65535


def test_a_still_webp_is_an_image(tmp_path):
    path = tmp_path / "photo.webp"
    Image.fromarray(moving_square(1)[0]).save(path, quality=95)
    assert media.webp_info(path) == (1, [0], -1)
    source = media.open_source(path)
    assert (source.kind, source.n_frames) == ("image", 1)
    Image.fromarray(moving_square(1)[0]).save(tmp_path / "photo.png")  # a PNG, the same
    assert media.apng_info(tmp_path / "photo.png") == (1, [0], -1, 0)
    assert media.open_source(tmp_path / "photo.png").kind == "image"
    assert media.default_output(source, [Path("s.jpg")]) == tmp_path / "photo-s.webp"
    out = tmp_path / "photo-s.webp"
    media.write_output(list(source.frames()), out, media.check_output(out, source), source.timing)
    assert media.open_source(out).kind == "image"  # a still stays a still


def test_a_webp_too_long_to_encode_in_memory_is_refused_up_front(tmp_path, monkeypatch):
    clip = media.open_source(write_video(tmp_path / "clip.mp4", moving_square(6), fps=10))
    assert media.check_output(tmp_path / "a.webp", clip, frame_size=(48, 32)) == "webp"
    monkeypatch.setattr(media, "WEBP_MAX_BYTES", 6 * 48 * 32 * 4 - 1)
    # streamed through ffmpeg's libwebp, any length will do
    assert media.check_output(tmp_path / "a.webp", clip, frame_size=(48, 32)) == "webp"
    monkeypatch.setattr(media, "_ffmpeg_writes_webp", lambda: False)  # a system ffmpeg
    with pytest.raises(VStyleError, match="6 frames at 48x32 are too many for a WebP encoded in "
                                          "memory.*no libwebp.*write .mp4"):
        media.check_output(tmp_path / "a.webp", clip, frame_size=(48, 32))


def test_webp_is_smaller_than_a_gif_of_the_same_clip(tmp_path):
    frames = [cv2.GaussianBlur(f, (0, 0), 1.0) for f in moving_square(8, 96, 64)]
    media.write_output(frames, tmp_path / "a.gif", "gif", Timing(10.0, None))
    media.write_output(frames, tmp_path / "a.webp", "webp", Timing(10.0, None))
    assert (tmp_path / "a.webp").stat().st_size < (tmp_path / "a.gif").stat().st_size


# --- output paths --------------------------------------------------------------------------------

def test_output_kind(tmp_path):
    assert media.output_kind(Path("a.GIF")) == "gif"
    assert media.output_kind(Path("a.mp4")) == "mp4"
    assert media.output_kind(Path("a.WebP")) == "webp"
    assert media.output_kind(Path("a.jpeg")) == "image"
    assert media.output_kind(Path("frames")) == "folder"
    (tmp_path / "dir.v2").mkdir()
    assert media.output_kind(tmp_path / "dir.v2") == "folder"
    with pytest.raises(VStyleError, match=r"\.avi is not supported.*\.gif, \.mp4"):
        media.output_kind(Path("a.avi"))
    (tmp_path / "out.gif").mkdir()  # a GIF or PNG frames? neither is guessed
    with pytest.raises(VStyleError, match=r"out.gif is a folder, yet its name ends in \.gif: "
                                          r"move the folder away to write a GIF there"):
        media.output_kind(tmp_path / "out.gif")


def test_default_output(tmp_path):
    clip = media.Source(tmp_path / "clip.mov", "video", 5, (8, 8), Timing(10, None), True)
    assert media.default_output(clip, [Path("s/starry.jpg")]) == tmp_path / "clip-starry.mp4"
    folder = media.Source(tmp_path / "shots.v1", "folder", 5, (8, 8), Timing(10, None), False)
    assert media.default_output(folder, [Path("a.jpg"), Path("b.png")]) == tmp_path / "shots.v1-a+b"
    still = media.Source(tmp_path / "p.jpg", "image", 1, (8, 8), Timing(10, None), False)
    assert media.default_output(still, [Path("a.jpg")]) == tmp_path / "p-a.png"


def test_check_output(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", moving_square(3), fps=10)
    source = media.open_source(clip)
    assert media.check_output(tmp_path / "new" / "deeper" / "out.gif", source) == "gif"
    assert not (tmp_path / "new").exists()  # a check makes nothing; the run makes the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # the probe is removed
    with pytest.raises(VStyleError, match="is the input itself"):
        media.check_output(tmp_path / "." / "clip.mp4", source)
    with pytest.raises(VStyleError, match=r"still image.*\.gif, \.webp, \.mp4 or a folder"):
        media.check_output(tmp_path / "out.png", source)
    with pytest.raises(VStyleError, match="not supported"):
        media.check_output(tmp_path / "out.mkv", source)
    (tmp_path / "afile").write_text("a file, not a folder")
    with pytest.raises(VStyleError, match="writable output folder"):  # fails even for root
        media.check_output(tmp_path / "afile" / "out.gif", source)
    still = media.open_source(write_video(tmp_path / "one.mp4", moving_square(1), fps=10))
    assert media.check_output(tmp_path / "still.jpg", still) == "image"


# --- atomic writes -------------------------------------------------------------------------------

def failing_frames(error: type[BaseException]):
    def frames():
        for i, frame in enumerate(moving_square(5)):
            if i == 2:
                raise error("stopped midway")
            yield frame
    return frames


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("name, kind", [("out.gif", "gif"), ("out.mp4", "mp4"),
                                        ("out.webp", "webp"), ("out", "folder")])
def test_failure_midway_leaves_nothing(tmp_path, name, kind, error):
    with pytest.raises(error, match="stopped midway"):
        media.write_output(failing_frames(error), tmp_path / name, kind, Timing(10.0, None))
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_old_output(tmp_path):
    out = tmp_path / "out.gif"
    media.write_output(moving_square(3), out, "gif", Timing(10.0, None))
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        media.write_output(failing_frames(RuntimeError), out, "gif", Timing(10.0, None))
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]


def test_ffmpeg_failure_is_a_one_line_error(tmp_path):
    frames = moving_square(2)
    with pytest.raises(VStyleError, match="could not write") as error:
        media.write_output(frames, tmp_path / "out.mp4", "mp4", Timing(10.0, None),
                           audio_from=tmp_path / "missing.mp3")
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_no_warnings_on_a_plain_write(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        media.write_output(moving_square(3), tmp_path / "out.gif", "gif", Timing(12.0, None))
