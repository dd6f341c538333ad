"""The frame loop end to end through the Python API: warm starts, timing round trips, resume."""

from __future__ import annotations

import json

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

import vstyle
from conftest import frames, run_cli, shared_file, with_audio, write_gif, write_mp4
from vstyle import media, metrics, video
from vstyle.flow import FlowEstimator
from vstyle.optimize import Stylizer, to_tensor

pytestmark = pytest.mark.filterwarnings("ignore::vstyle.VStyleWarning")
TINY = dict(size=32, iterations=3, first_iterations=4, min_iterations=0, weights="random")


@pytest.mark.parametrize("mode", ["previous", "none", "flow"])
def test_frame_two_starts_from_the_right_place(clip, style, tmp_path, monkeypatch, mode):
    inits = []
    original = Stylizer.stylize

    def spy(self, content, init, *args, **kwargs):
        inits.append((content.cpu().clone(), init.cpu().clone()))  # kept on the CPU
        return original(self, content, init, *args, **kwargs)
    monkeypatch.setattr(Stylizer, "stylize", spy)
    work = tmp_path / "work"
    vstyle.stylize(clip, style, tmp_path / "out", warm_start=mode, max_frames=3,
                   work_dir=work, keep_work=True, **TINY)
    assert len(inits) == 3
    first_result = to_tensor(cv2.cvtColor(cv2.imread(str(work / "00001.png")), cv2.COLOR_BGR2RGB),
                             torch.device("cpu"))
    content2, init2 = inits[1]
    if mode == "none":
        assert torch.equal(init2, content2)
    elif mode == "previous":  # the same picture (to a float ulp: a GPU divides by 255 by
        assert (init2 - first_result).abs().max() < 1e-6  # multiplying; a level is 4e-3)
    else:  # flow: the previous result moved along the flow, so close to it, but not equal
        assert not torch.equal(init2, first_result)
        assert (init2 - first_result).abs().mean() < (content2 - first_result).abs().mean()


def test_flow_runs_on_one_opencv_thread_beside_a_cpu_optimizer(clip, style, tmp_path,
                                                                monkeypatch):
    seen = []
    original = FlowEstimator.warp

    def spy(self, prev, cur, **kwargs):
        seen.append(cv2.getNumThreads())
        return original(self, prev, cur, **kwargs)
    monkeypatch.setattr(FlowEstimator, "warp", spy)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)  # a pool to give back, even on a one-core machine
    try:
        vstyle.stylize(clip, style, tmp_path / "out", max_frames=3, device="cpu", **TINY)
        assert seen and set(seen) == {1}  # the flows ran, in the prefetch thread, on one thread
        assert cv2.getNumThreads() == 2  # and the caller's setting is back
    finally:
        cv2.setNumThreads(before)


def test_mp4_to_gif_keeps_count_fps_and_loop(clip, style, tmp_path):
    out = tmp_path / "out.gif"
    result = vstyle.stylize(clip, style, out, **TINY)
    n, durations, loop, local_tables = media.gif_info(out)
    assert result.n_frames == n == 8
    assert sum(durations) == pytest.approx(8 / 12 * 1000, abs=10)  # 12 fps, exact to 1 cs
    assert loop == 0 and not local_tables
    assert iio.imread(out, index=0).shape[:2] == (24, 32)  # --size is the long side


def test_gif_to_gif_keeps_each_duration(style, tmp_path):
    durations = [20, 50, 30, 40, 20]
    gif = write_gif(tmp_path / "in.gif", frames(5), durations, loop=0)
    out = tmp_path / "out.gif"
    vstyle.stylize(gif, style, out, **TINY)
    n, got, loop, _ = media.gif_info(out)
    assert n == 5 and got == durations and loop == 0


def test_gif_to_webp_keeps_each_duration_and_the_loop(style, tmp_path):
    durations = [20, 50, 30, 40, 20]
    gif = write_gif(tmp_path / "in.gif", frames(5), durations, loop=0)
    out = tmp_path / "out.webp"
    result = vstyle.stylize(gif, style, out, **TINY)
    with Image.open(out) as image:
        got = []
        for i in range(image.n_frames):
            image.seek(i)
            image.load()
            got.append(image.info["duration"])
        assert image.size == (32, 24) and image.info["loop"] == 0
    assert result.n_frames == 5 and got == durations
    # and an animated WebP as input: stylized as an animation, into a WebP beside it
    again = vstyle.stylize(out, style, **TINY)
    assert again.output == tmp_path / f"out-{style.stem}.webp" and again.n_frames == 5
    assert media.webp_info(again.output) == (5, durations, 0)


def test_gif_to_mp4_and_folder_to_folder(style, tmp_path):
    gif = write_gif(tmp_path / "in.gif", frames(4), [100] * 4)
    mp4 = tmp_path / "out.mp4"
    vstyle.stylize(gif, style, mp4, **TINY)
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert n == 4 and iio.immeta(mp4)["fps"] == pytest.approx(10)

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(frames(3)):  # natural order: frame2 before frame10
        iio.imwrite(folder / f"frame{[2, 10, 1][i]}.png", image)
    out = tmp_path / "styled"
    vstyle.stylize(folder, style, out, **TINY)
    assert [p.name for p in media.written_frames(out)] == ["00001.png", "00002.png", "00003.png"]


def test_still_image_and_max_frames(clip, style, tmp_path):
    photo = tmp_path / "photo.png"
    iio.imwrite(photo, frames(1, 80, 60)[0])
    out = tmp_path / "photo_styled.png"
    vstyle.stylize(photo, style, out, **TINY)
    assert iio.imread(out).shape == (24, 32, 3)

    gif = tmp_path / "short.gif"
    vstyle.stylize(clip, style, gif, max_frames=3, **TINY)
    assert media.gif_info(gif)[0] == 3


def test_real_clip_yuv444_with_audio(style, tmp_path):
    cockatoo = shared_file("clips/cockatoo.mp4")
    out = tmp_path / "cockatoo.mp4"
    result = vstyle.stylize(cockatoo, style, out, max_frames=6, **TINY)
    assert result.n_frames == 6
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    meta = iio.immeta(out)
    assert n == 6 and meta["fps"] == pytest.approx(20) and "audio_codec" in meta
    gif = tmp_path / "cockatoo.gif"
    vstyle.stylize(cockatoo, style, gif, max_frames=6, **TINY)
    assert media.gif_info(gif)[0] == 6


def test_start_and_end_stylize_part_of_a_clip_with_its_sound(style, tmp_path):
    clip = with_audio(write_mp4(tmp_path / "v.mp4", frames(12)), tmp_path / "a.mp4")  # 1 s
    out = tmp_path / "part.mp4"
    result = vstyle.stylize(clip, style, out, start=0.25, end="0:00.75", **TINY)
    assert result.n_frames == imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 6
    meta = iio.immeta(out)  # frames 3..8, and the sound from 0.25 s on
    assert "audio_codec" in meta and meta["duration"] == pytest.approx(0.5, abs=0.05)


def test_a_failed_save_stops_the_run_at_the_next_frame(clip, style, tmp_path, monkeypatch):
    # frames are written in a thread while the next one is optimized
    from vstyle.workdir import WorkDir
    original, started = WorkDir.save, []

    def save(self, index, image, stats):
        if index == 1:
            raise OSError(28, "No space left on device")
        original(self, index, image, stats)
    monkeypatch.setattr(WorkDir, "save", save)
    with pytest.raises(OSError, match="No space left"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=6, **TINY,
                       on_event=lambda e: e.kind == "frame_start" and
                       started.append(e.frame))
    assert started == [1, 2, 3]  # frame 2's save failed while frame 3 was being optimized
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize("gaps", [(1,), (1, 2, 4)], ids=["short-term", "long-term"])
def test_interrupted_run_resumes_without_a_seam(clip, style, tmp_path, gaps):
    # long-term: the resumed frames 4-6 need the results of frames 1-3 back from the work folder
    full = tmp_path / "full"
    out, work = tmp_path / "out", tmp_path / "work"

    def stop_after_three(event):
        if event.kind == "frame" and event.frame == 3:
            raise KeyboardInterrupt
    with pytest.raises(vstyle.Interrupted, match="call it again the same way to resume"):
        vstyle.stylize(clip, style, out, max_frames=6, work_dir=work, on_event=stop_after_three,
                       temporal_frames=gaps, **TINY)
    assert not out.exists() and sorted(p.name for p in work.glob("*.png")) == \
        ["00001.png", "00002.png", "00003.png"]

    first = vstyle.stylize(clip, style, full, max_frames=6, temporal_frames=gaps, **TINY)
    result = vstyle.stylize(clip, style, out, max_frames=6, work_dir=work, temporal_frames=gaps,
                            **TINY)
    assert result.reused == 3 and not work.exists()
    # the figures of the frames from before the stop were kept with them
    assert result.consistency == pytest.approx(first.consistency, rel=1e-6)
    resumed = [iio.imread(p) for p in media.written_frames(out)]
    uninterrupted = [iio.imread(p) for p in media.written_frames(full)]
    assert len(resumed) == 6
    for a, b in zip(resumed, uninterrupted):  # the same frames, as if never interrupted
        assert np.abs(a.astype(int) - b).max() <= 1


def test_a_shorter_rerun_keeps_the_longer_runs_frames(clip, style, tmp_path):
    # 8 frames stylized (a run interrupted near its end), then --max-frames 3 for a quick look:
    # the other 5 finished frames are kept for the whole clip, not deleted with the work folder
    out = tmp_path / "out.gif"
    vstyle.stylize(clip, style, out, keep_work=True, **TINY)
    notices = []
    short = vstyle.stylize(clip, style, out, max_frames=3, **TINY,
                           on_event=lambda e: e.kind == "notice" and notices.append(e.message))
    assert short.reused == 3 and notices[-1].startswith("kept 5 more finished frames in ")
    assert list(tmp_path.glob(".out.gif.vstyle-work"))
    whole = vstyle.stylize(clip, style, out, **TINY)
    assert whole.reused == 8 and not list(tmp_path.glob(".out.gif.vstyle-work"))


def test_changed_options_start_fresh(clip, style, tmp_path):
    work = tmp_path / "work"
    vstyle.stylize(clip, style, tmp_path / "a.gif", max_frames=2, work_dir=work, keep_work=True,
                   **TINY)
    notices = []
    result = vstyle.stylize(clip, style, tmp_path / "b.gif", max_frames=2, work_dir=work,
                            on_event=lambda e: e.kind == "notice" and notices.append(e.message),
                            keep_work=True, **{**TINY, "style_weight": 10.0})
    assert result.reused == 0 and notices == [
        "style_weight changed since the last run: starting fresh"]  # says what changed
    notices.clear()
    iio.imwrite(tmp_path / "other.png", np.full((16, 16, 3), 90, np.uint8))
    vstyle.stylize(clip, tmp_path / "other.png", tmp_path / "b.gif", max_frames=2, work_dir=work,
                   keep_work=True, on_event=lambda e: e.kind == "notice" and
                   notices.append(e.message), **{**TINY, "style_weight": 20.0})
    assert notices == ["style_weight, the style images changed since the last run: starting "
                       "fresh"]


@pytest.mark.parametrize("restart", [False, True])
def test_a_work_dir_holding_other_files_is_refused_and_left_alone(clip, style, tmp_path, restart):
    # `--work-dir .` must neither count the user's 00001.png as a finished frame nor delete
    # the folder at the end.
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    cv2.imwrite(str(work / "00001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(vstyle.VStyleError, match="holds files that are not a vstyle run's"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=2, work_dir=work,
                       restart=restart, **TINY)
    assert sorted(p.name for p in work.iterdir()) == ["00001.png", "notes.txt"]
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's notice")
def test_a_large_size_on_the_cpu_says_how_to_go_faster(clip, style, tmp_path):
    class Started(Exception):
        pass

    def notices(**values):  # what is said before the frames start (then stop: no need to paint)
        said = []

        def listen(event):
            if event.kind == "start":
                raise Started
            if event.kind == "notice":
                said.append(event.message)
        with pytest.raises(Started):
            vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=1, on_event=listen,
                           work_dir=tmp_path / str(values), **{**TINY, **values})
        return said
    assert notices(size=512) == ["no CUDA GPU found: running on the CPU, many times slower "
                                 "than on a GPU; size=256 would run about 4x faster"]
    assert notices(size=512, device="cpu") == []  # asked for: no news
    assert notices(size=256) == []


def test_a_still_output_never_overwrites_a_frame_of_the_input(style, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, image in enumerate(frames(2), start=1):
        iio.imwrite(folder / f"{i:05d}.png", image)
    before = (folder / "00001.png").read_bytes()
    with pytest.raises(vstyle.VStyleError, match="output .*00001.png is one of the input's "
                                                 "frames itself: choose another output name"):
        vstyle.stylize(folder, style, folder / "00001.png", max_frames=1, **TINY)
    assert (folder / "00001.png").read_bytes() == before


def test_folders_a_run_made_for_its_work_go_with_it(clip, style, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    # --work-dir new/sub: both made, both removed at the end
    vstyle.stylize(clip, style, root / "a.gif", max_frames=2, work_dir=root / "new" / "sub",
                   **TINY)
    assert sorted(p.name for p in root.iterdir()) == ["a.gif"]
    # a run that stops before its first frame leaves no empty output folder behind
    with pytest.raises(vstyle.VStyleError, match="weights file"):
        vstyle.stylize(clip, style, root / "out" / "b.gif", max_frames=2,
                       **{**TINY, "weights": str(root / "missing.pth")})
    assert sorted(p.name for p in root.iterdir()) == ["a.gif"]
    # a folder the run did not make stays, and so does a made one that holds the output
    (root / "mine").mkdir()
    vstyle.stylize(clip, style, root / "mine" / "new" / "c.gif", max_frames=2, **TINY)
    assert [p.name for p in (root / "mine" / "new").iterdir()] == ["c.gif"]
    with pytest.raises(vstyle.VStyleError, match=r"work folder .*a.gif is a file: pass "
                                                 r"work_dir with a new or empty folder"):
        vstyle.stylize(clip, style, root / "d.gif", max_frames=2, work_dir=root / "a.gif",
                       **TINY)
    # a folder output holds frames only: its work folder is found a place elsewhere first
    with pytest.raises(vstyle.VStyleError, match="work_dir='.*work' is inside the output folder"):
        vstyle.stylize(clip, style, root / "frames", max_frames=2,
                       work_dir=root / "frames" / "work", **TINY)
    assert not (root / "frames").exists()


def test_the_same_run_started_twice_is_refused_while_the_first_runs(clip, style, tmp_path):
    # The command run again in a second terminal: both would write the same frames, and the
    # first to finish would delete the work folder under the other. The second is refused.
    from vstyle.video import default_work_dir
    from vstyle.workdir import WorkDir
    out = tmp_path / "out.gif"
    running = WorkDir(default_work_dir(out), {"version": 0})
    with pytest.raises(vstyle.VStyleError, match="another vstyle run is working in .*wait for it"):
        vstyle.stylize(clip, style, out, max_frames=2, **TINY)
    assert not out.exists() and (default_work_dir(out) / "manifest.json").exists()
    running.close()  # the first run ends (or dies): the folder is free
    assert vstyle.stylize(clip, style, out, max_frames=2, **TINY).n_frames == 2
    assert not default_work_dir(out).exists()  # lock and all removed


def test_a_work_folder_on_a_disk_without_locks_still_runs(clip, style, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")  # some network mounts
    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=2, **TINY).n_frames == 2


def test_loop_runs_of_another_length_start_fresh(clip, style, tmp_path):
    # --loop pulls the last frames towards frame 1: they must not be reused mid-clip
    work = tmp_path / "work"
    vstyle.stylize(clip, style, tmp_path / "a.gif", max_frames=4, loop=True, work_dir=work,
                   keep_work=True, **TINY)
    again = vstyle.stylize(clip, style, tmp_path / "b.gif", max_frames=6, loop=True,
                           work_dir=work, **TINY)
    assert again.reused == 0 and len(again.frames) == 6
    # without --loop a shorter rerun reuses frames, and reports only its own
    vstyle.stylize(clip, style, tmp_path / "c.gif", max_frames=4, work_dir=work, keep_work=True,
                   **TINY)
    shorter = vstyle.stylize(clip, style, tmp_path / "d.gif", max_frames=3, work_dir=work, **TINY)
    assert shorter.reused == 3 and [f["frame"] for f in shorter.frames] == [1, 2, 3]


def test_a_new_file_beside_a_folders_frames_does_not_restart_it(style, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, image in enumerate(frames(3)):
        iio.imwrite(folder / f"{i}.png", image)
    work = tmp_path / "work"
    vstyle.stylize(folder, style, tmp_path / "a.gif", work_dir=work, keep_work=True, **TINY)
    (folder / "notes.txt").write_text("shot list")
    assert vstyle.stylize(folder, style, tmp_path / "b.gif", work_dir=work, **TINY).reused == 3


def test_fps_stylizes_fewer_frames_and_keeps_length_and_sound(style, tmp_path):
    clip = with_audio(write_mp4(tmp_path / "v.mp4", frames(6)), tmp_path / "sound.mp4")  # 0.5 s
    result = vstyle.stylize(clip, style, tmp_path / "half.mp4", fps=6, keep_work=True, **TINY)
    meta = iio.immeta(tmp_path / "half.mp4")
    assert result.n_frames == 3 and len(result.frames) == 3  # half the work
    assert meta["fps"] == 6 and meta["duration"] == pytest.approx(0.5, abs=0.05)
    assert meta["audio_codec"] == "aac"  # the clip keeps its length, so its sound fits
    # another --fps stylizes other frames: an earlier run's are not reused
    again = vstyle.stylize(clip, style, tmp_path / "half.mp4", fps=4, **TINY)
    assert again.reused == 0 and again.n_frames == 2


def test_a_hard_cut_starts_a_new_painting(style, tmp_path):
    # two frames of a panning scene, then a cut to a flat red wall, then to a flat green one:
    # each new shot is painted afresh (the first frame's budget, 4 iterations here, against 3),
    # not held to the painting before it; within the flat shot, no motion: a warm frame
    folder = tmp_path / "cuts"
    folder.mkdir()
    a, b = frames(2)
    red, green = (np.full_like(a, c) for c in ((200, 30, 30), (30, 200, 30)))
    for i, image in enumerate([a, b, red, red + 1, green]):
        iio.imwrite(folder / f"{i}.png", image)
    report = tmp_path / "report.json"
    result = vstyle.stylize(folder, style, tmp_path / "out", report=report, **TINY)
    assert [f["new_shot"] for f in result.frames] == [False, False, True, False, True]
    assert [f["iterations"] for f in result.frames] == [4, 3, 4, 3, 4]
    # the green wall's painting is no red painting carried over: it changed as the input did
    cut = result.frames[4]
    assert cut["warping_error"] > 0.1 * cut["input_warping_error"] > 0.01
    assert [f["new_shot"] for f in json.loads(report.read_text())["per_frame"]] == \
        [False, False, True, False, True]
    assert result.consistency["pairs"] == 2  # those across a cut measure no steadiness
    # --loop: the last frames, in another shot than frame 1's, have no seam to close, so the
    # held green wall is copied, not pulled towards frame 1's painting
    iio.imwrite(folder / "5.png", green)
    looped = vstyle.stylize(folder, style, tmp_path / "loop", loop=True, **TINY)
    assert [f["repeat"] for f in looped.frames] == [False] * 5 + [True]


def test_after_a_flash_the_painting_carries_on_from_the_frame_before_it(style, tmp_path,
                                                                        monkeypatch):
    # lightning or a camera's flash: the flash frame is painted afresh, and the frame after it,
    # unseen in the flash but seen in the frame before, carries on from that frame's painting
    # (painted afresh twice, the painting would jump at the flash and back)
    a, b, c, d = frames(4)
    flash = np.clip(c * 1.6 + 50, 0, 255).astype(np.uint8)
    folder = tmp_path / "flash"
    folder.mkdir()
    for i, image in enumerate([a, b, flash, d]):
        iio.imwrite(folder / f"{i}.png", image)
    starts = []
    warm_start = video.warm_start
    monkeypatch.setattr(video, "warm_start", lambda content, earlier, *args: starts.append(
        earlier[1]) or warm_start(content, earlier, *args))
    result = vstyle.stylize(folder, style, tmp_path / "out", **TINY)
    assert [f["new_shot"] for f in result.frames] == [False, False, True, False]
    assert [f["iterations"] for f in result.frames] == [4, 3, 4, 3]
    out = [media.load_image(p) for p in media.written_frames(tmp_path / "out")]
    assert len(starts) == 2 and np.array_equal(starts[1], out[1])  # frame 2's painting
    # its warping error is measured from frame 2 too, where the picture is the scene's
    assert result.frames[3]["input_warping_error"] < 0.1 * result.frames[2]["input_warping_error"]


def test_a_repeated_picture_is_copied_not_painted_again(style, tmp_path, monkeypatch):
    # a held frame in a folder (or a GIF), and every other frame at twice a clip's rate
    folder = tmp_path / "shots"
    folder.mkdir()
    a, b, c = frames(3)
    for i, image in enumerate([a, b, b, c]):
        iio.imwrite(folder / f"{i}.png", image)
    flows = []
    warp = FlowEstimator.warp
    monkeypatch.setattr(FlowEstimator, "warp", lambda *args, **kwargs: flows.append(1) or
                        warp(*args, **kwargs))
    result = vstyle.stylize(folder, style, tmp_path / "out", **TINY)
    assert [f["iterations"] > 0 for f in result.frames] == [True, True, False, True]
    assert [f["repeat"] for f in result.frames] == [False, False, True, False]
    assert len(flows) == 2  # none for the copy
    assert result.frames[2]["loss"] == result.frames[1]["loss"]  # no NaN in the report
    out = [media.load_image(p) for p in media.written_frames(tmp_path / "out")]
    assert np.array_equal(out[1], out[2]) and not np.array_equal(out[2], out[3])
    assert result.frames[2]["warping_error"] == result.frames[2]["input_warping_error"] == 0

    # resumed right before the copy: it still repeats frame 2's numbers
    def stop_after_two(event):
        if event.kind == "frame" and event.frame == 2:
            raise KeyboardInterrupt
    work, report = tmp_path / "work", tmp_path / "report.json"
    with pytest.raises(vstyle.Interrupted):
        vstyle.stylize(folder, style, tmp_path / "again", work_dir=work, on_event=stop_after_two,
                       **TINY)
    resumed = vstyle.stylize(folder, style, tmp_path / "again", work_dir=work, report=report,
                             **TINY)
    assert resumed.reused == 2 and resumed.frames[2]["loss"] == resumed.frames[1]["loss"]
    assert "NaN" not in report.read_text()

    clip = write_mp4(tmp_path / "v.mp4", frames(3))  # 12 fps
    doubled = vstyle.stylize(clip, style, tmp_path / "x2.gif", fps=24, **TINY)
    assert [f["iterations"] > 0 for f in doubled.frames] == [True, False] * 3


def test_ctrl_c_while_encoding_keeps_the_frames(clip, style, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(media, "write_output", interrupted)
    with pytest.raises(vstyle.Interrupted, match="4 of 4 frames are kept in .*call it again"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=4, **TINY)
    assert len(list((tmp_path / ".out.gif.vstyle-work").glob("*.png"))) == 4
    # the rerun only encodes: it needs no network (no weights, no GPU)
    monkeypatch.undo()
    monkeypatch.setattr(video, "Stylizer", lambda *a, **k: pytest.fail("loaded the network"))
    result = vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=4, **TINY)
    assert result.reused == 4 and media.gif_info(tmp_path / "out.gif")[0] == 4


def test_a_full_disk_while_encoding_says_the_frames_are_kept(clip, style, tmp_path,
                                                            monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(media, "_write_gif", full)
    with pytest.raises(vstyle.VStyleError, match=r"^could not write .*out.gif \(.*No space left "
                       r"on device\): check free disk space .*; the 3 painted frames are kept "
                       r"in .*\.out\.gif\.vstyle-work: call it again the same way to encode "
                       r"them$"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=3, **TINY)
    assert len(list((tmp_path / ".out.gif.vstyle-work").glob("*.png"))) == 3
    assert not list(tmp_path.glob("*out.gif*tmp*"))  # no half-written GIF


def test_a_full_disk_while_saving_frames_is_one_error(clip, style, tmp_path, monkeypatch):
    from vstyle import workdir

    def full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(workdir, "png_bytes", full)
    with pytest.raises(vstyle.VStyleError, match="cannot save frame 1 .*No space left on device"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=2, **TINY)


def test_a_still_clip_reports_no_ratio(style, tmp_path):
    still = write_mp4(tmp_path / "still.mp4", [frames(1)[0]] * 3)
    report = tmp_path / "r.json"
    vstyle.stylize(still, style, tmp_path / "out.gif", report=report, **TINY)
    text = report.read_text()
    assert "NaN" not in text and json.loads(text)["consistency"]["ratio"] is None



def test_one_frame_has_no_warping_error(clip, style, tmp_path):
    # no pair of frames: nothing measured, which is not a perfect 0
    report = tmp_path / "r.json"
    vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=1, report=report, **TINY)
    assert json.loads(report.read_text())["consistency"] == {
        "warping_error": None, "input_warping_error": None, "ratio": None, "pairs": 0}
    line = run_cli(clip, style, "-o", tmp_path / "one.gif", "--report", report,
                   "--max-frames", "1", "--size", "32", "--first-iterations", "4").stderr
    assert "wrote" in line and "warping error" not in line


def test_report_has_per_frame_stats_and_consistency(clip, style, tmp_path):
    report = tmp_path / "report.json"
    vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=4, report=report, **TINY)
    data = json.loads(report.read_text())
    assert (data["input"], data["styles"]) == (str(clip), [str(style)])
    assert [f["frame"] for f in data["per_frame"]] == [1, 2, 3, 4]
    assert all(f["iterations"] >= 1 and f["seconds"] > 0 for f in data["per_frame"])
    c = data["consistency"]
    assert c["pairs"] == 3 and c["warping_error"] > 0 and c["input_warping_error"] > 0
    assert c["ratio"] == pytest.approx(c["warping_error"] / c["input_warping_error"])
    assert data["options"]["max_frames"] == 4 and data["options"]["size"] == TINY["size"]


def test_consistency_measured_during_the_run_equals_the_metric(clip, style, tmp_path):
    # With the flow warm start the run measures each pair as it goes, with its own warps;
    # the figures must be exactly what the metric module computes afterwards.
    result = vstyle.stylize(clip, style, tmp_path / "out", max_frames=4, **TINY)
    assert result.consistency is not None and result.consistency["pairs"] == 3
    size = media.fit_size(media.open_source(clip).size, TINY["size"])
    outputs = [media.load_image(p) for p in media.written_frames(tmp_path / "out")]
    expected = metrics.consistency(media.open_source(clip, 4).frames(size), outputs)
    assert result.consistency == pytest.approx(expected, rel=1e-6)
    assert vstyle.stylize(clip, style, tmp_path / "prev", max_frames=4, warm_start="previous",
                          **TINY).consistency is None  # no warps: only --report measures


def test_temporal_ordering_none_previous_flow(style, tmp_path):
    """On a panning clip in a clearly stylized regime: none > previous > flow (warping error).

    Every frame gets enough iterations to move far from its content; with few, `none` stays
    near the (steady) content and `previous` drags the last picture along the pan instead.
    """
    clip = write_mp4(tmp_path / "pan.mp4", frames(5, 64, 48))
    strong = dict(TINY, size=48, iterations=40, first_iterations=40, style_weight=1e5, tol=0)
    errors = {}
    for mode in ("none", "previous", "flow"):
        report = tmp_path / f"{mode}.json"
        vstyle.stylize(clip, style, tmp_path / f"{mode}.gif", warm_start=mode, report=report,
                       temporal_weight=100.0 if mode == "flow" else 0.0, **strong)
        errors[mode] = json.loads(report.read_text())["consistency"]["warping_error"]
    assert errors["none"] > errors["previous"] > errors["flow"], errors


def test_restart_ignores_finished_frames_and_keep_work_keeps_them(clip, style, tmp_path):
    work = tmp_path / "work"
    vstyle.stylize(clip, style, tmp_path / "a.gif", max_frames=3, work_dir=work, keep_work=True,
                   **TINY)
    assert sorted(p.name for p in work.glob("*.png")) == ["00001.png", "00002.png", "00003.png"]
    notices = []
    result = vstyle.stylize(clip, style, tmp_path / "b.gif", max_frames=3, work_dir=work,
                            restart=True, on_event=lambda e: e.kind == "notice" and
                            notices.append(e.message), **TINY)
    assert result.reused == 0 and notices == ["restart=True: starting fresh"] and not work.exists()
