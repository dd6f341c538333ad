"""`vstyle batch`: many inputs, one bad one; long videos split into chunks; local Ray."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import imageio_ffmpeg
import pytest
from PIL import Image

from conftest import FAST, ROOT, frames, run_cli, with_audio, write_gif, write_mp4
from vstyle import media
from vstyle.errors import VStyleError, VStyleWarning
from vstyle.batch import LEDGER, OVERLAP, chunk_jobs, expand_inputs, plan, ray_shape, run_batch
from vstyle.options import Options

TINY = Options(weights="random", size=32, iterations=3, first_iterations=4, min_iterations=0)


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
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, "a-style.mp4", "b-style.gif"]
    assert media.gif_info(out / "b-style.gif")[1] == [60, 60, 120]


def test_batch_one_bad_input_does_not_stop_the_others(three_clips, style, tmp_path):
    out = tmp_path / "out"
    moot = ["--warm-start", "none", "--temporal-weight", "5"]  # said once, not once a job
    result = run_cli("batch", three_clips, style, "-o", out, *FAST, *moot)
    check_batch(result, out)
    assert result.stderr.count("ignored: --temporal-weight") == 1, result.stderr
    again = run_cli("batch", three_clips, style, "-o", out, *FAST[:-1], *moot)  # finished: skipped
    assert again.returncode == 1 and again.stderr.count("│ skipped") == 2


def test_batch_workers_name_options_as_the_batch_does():
    # a worker started afresh (spawn, forkserver) would speak the library's keywords
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from vstyle import batch, errors
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=batch._worker_init, initargs=(None, True)) as pool:
        assert pool.submit(errors.opt, "size", 256).result() == "--size 256"
    assert errors.opt("size", 256) == "size=256"


def test_run_batch_from_python_takes_strings_folders_and_keywords(three_clips, style,
                                                                 tmp_path):
    import vstyle  # vstyle.batch comes with the package
    outcomes = vstyle.batch.run_batch([str(three_clips)], str(style), str(tmp_path / "out"),
                                      **TINY.__dict__)  # a folder of clips: each clip
    assert [(o.input.name, o.status) for o in outcomes] == [
        ("a.mp4", "done"), ("b.gif", "done"), ("c.mp4", "failed")]  # c.mp4 is cut short


def test_batch_says_an_option_moot_for_every_output_once_and_one_moot_for_some_never(
        style, tmp_path):
    clips = [write_gif(tmp_path / f"{name}.gif", frames(2), [100, 100]) for name in "ab"]
    photo = tmp_path / "photo.png"
    Image.fromarray(frames(1, 40, 30)[0]).save(photo)
    options = Options(**{**TINY.__dict__, "crf": 20})
    with pytest.warns(VStyleWarning) as said:  # two GIFs and a still: no MP4 among them
        outcomes = run_batch([*clips, photo], style, tmp_path / "out", options)
    assert [o.status for o in outcomes] == ["done"] * 3
    # iterations=3 is moot for the photo alone, not for the GIFs: nothing said of it
    assert [str(w.message) for w in said if "ignored" in str(w.message)] == [
        "ignored: crf=20 (an MP4's quality)"]


def test_a_long_webp_fails_at_planning_not_after_its_chunks(style, tmp_path, monkeypatch):
    monkeypatch.setattr(media, "WEBP_MAX_BYTES", 100)
    monkeypatch.setattr(media, "_ffmpeg_writes_webp", lambda: False)  # a system ffmpeg's
    clip = tmp_path / "long.webp"  # batch writes an input's own kind: a WebP
    media.write_output(frames(6), clip, "webp", media.Timing(10.0, None))
    outcomes, jobs = plan([clip], [[style]], tmp_path / "out", TINY, chunk_frames=3)
    assert jobs == [] and outcomes[0].status == "failed"
    assert "too many for a WebP" in outcomes[0].error


def test_batch_redoes_an_output_whose_options_changed(style, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_mp4(clips / "a.mp4", frames(3))
    write_gif(clips / "b.gif", frames(2), [100, 100])
    out = tmp_path / "out"
    first = run_batch(expand_inputs([clips]), [style], out, TINY)
    assert [o.status for o in first] == ["done", "done"]
    assert [o.status for o in run_batch(expand_inputs([clips]), [style], out, TINY)] == \
        ["skipped", "skipped"]
    bigger = run_batch(expand_inputs([clips]), [style], out, TINY.replace(size=48))
    assert [o.status for o in bigger] == ["done", "done"]  # was: skipped, still 32 px wide
    assert iio.imread(out / "b-style.gif", index=0).shape[:2] == (36, 48)
    # an encoding option redoes only the outputs it encodes: --crf the MP4, not the GIF
    assert [o.status for o in run_batch(expand_inputs([clips]), [style], out,
                                        TINY.replace(size=48, crf=30))] == ["done", "skipped"]

    # a batch stopped after its first output still knows what made it
    def stop(job, status, frames, error):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_batch(expand_inputs([clips]), [style], out, TINY, on_done=stop)
    assert iio.imread(out / "b-style.gif", index=0).shape[:2] == (36, 48)  # not reached
    again = run_batch(expand_inputs([clips]), [style], out, TINY)
    assert [o.status for o in again] == ["skipped", "done"]
    assert iio.imread(out / "b-style.gif", index=0).shape[:2] == (24, 32)

    # an output whose input is gone is left alone
    gone = clips / "gone.mp4"
    write_mp4(gone, frames(2))
    assert run_batch([gone], [style], out, TINY)[0].status == "done"
    gone.unlink()
    assert run_batch([gone], [style], out, TINY.replace(size=48))[0].status == "skipped"

    # an output the ledger does not know (made by hand, or before it) is left alone
    (out / LEDGER).unlink()
    with pytest.warns(VStyleWarning, match=r"a-style.mp4 exists and no vstyle batch made it: "
                                           r"left alone; delete it to stylize .*a.mp4"):
        unknown = run_batch(expand_inputs([clips]), [style], out, TINY.replace(size=48))
    assert [(o.status, o.error) for o in unknown] == [
        ("skipped", "exists, not made by vstyle batch: left alone")] * 2


def test_a_folder_of_clips_holds_animated_webps_and_pngs_too(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    images = [Image.fromarray(f) for f in frames(2)]
    for name in ("a.png", "b.webp"):
        images[0].save(folder / name, save_all=True, append_images=images[1:], duration=100)
    write_gif(folder / "c.gif", frames(2), [100, 100])
    images[0].save(folder / "still.png")  # a frame, not a clip: left out beside clips
    images[0].convert("RGBA").save(folder / "still.webp")  # an extended WebP (alpha), still
    (folder / "out").mkdir()  # OUTDIR, and the style beside the clips: not inputs left out
    images[0].save(folder / "style.jpg")
    with pytest.warns(VStyleWarning, match=r"folder .*clips: stylizing its 3 clips; left out: "
                                           r"still.png and still.webp \(pass a folder or an image "
                                           r"by its own name; to stylize the frames here, move"):
        found = expand_inputs([folder], known=[folder / "out", folder / "style.jpg"])
    assert [p.name for p in found] == ["a.png", "b.webp", "c.gif"]
    stills = tmp_path / "frames"
    stills.mkdir()
    for name in ("1.png", "2.webp"):
        images[0].save(stills / name)
    assert expand_inputs([stills]) == [stills]  # a folder of frames is one input


def test_batch_names_an_animated_png_s_output_as_an_animation(style, tmp_path):
    images = [Image.fromarray(f) for f in frames(3)]
    images[0].save(tmp_path / "anim.png", save_all=True, append_images=images[1:], duration=100)
    outcomes = run_batch([tmp_path / "anim.png"], [style], tmp_path / "out", TINY)
    assert outcomes[0].status == "done", outcomes[0].error
    assert outcomes[0].output.name == "anim-style.gif"
    assert media.gif_info(outcomes[0].output)[:2] == (3, [100, 100, 100])


def test_batch_on_local_ray(three_clips, style, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = run_cli("batch", three_clips, style, "-o", out, "--ray", "--workers", 2, *FAST,
                     timeout=600)  # three jobs, two at a time
    check_batch(result, out)


def test_ray_tasks_share_the_cores_as_workers_asks():
    one = [{"Alive": True, "Resources": {"CPU": 16.0}}]
    two = [{"Alive": True, "Resources": {"CPU": 8.0}}] * 2
    assert ray_shape({"CPU": 16.0, "GPU": 4.0}, one, 2) == (1, 1)  # a card each
    assert ray_shape({"CPU": 16.0}, one, None) == (0, 1)  # a core each, 16 at once
    assert ray_shape({"CPU": 16.0}, one, 4) == (0, 4)
    assert ray_shape({"CPU": 16.0}, two, 1) == (0, 8)  # no more than one node holds
    assert ray_shape({"CPU": 16.0}, two, 3) == (0, 4)  # 5 each would fit one a node: 2 at once
    assert ray_shape({"CPU": 2.0}, [{"Alive": True, "Resources": {"CPU": 2.0}}], 8) == (0, 1)


def test_ray_runs_no_more_tasks_at_once_than_workers(style, tmp_path, monkeypatch):
    # a stand-in for Ray: records how many tasks are in flight when each is submitted
    in_flight, seen = set(), []

    class FakeRay:
        init = shutdown = cancel = staticmethod(lambda *a, **k: None)
        cluster_resources = staticmethod(lambda: {"CPU": 8.0})
        nodes = staticmethod(lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])

        @staticmethod
        def remote(**resources):
            assert resources == {"num_gpus": 0, "num_cpus": 4}  # 8 cores, 2 at once

            class Task:
                @staticmethod
                def remote(job, options, threads, flags):
                    ref = object()
                    in_flight.add(ref)
                    seen.append(len(in_flight))
                    return ref
            return lambda fn: Task

        @staticmethod
        def wait(refs, num_returns):
            done = refs[:num_returns]
            in_flight.difference_update(done)
            return done, refs[num_returns:]

        get = staticmethod(lambda ref: ("done", 1, ""))
    monkeypatch.setitem(sys.modules, "ray", FakeRay)
    clips = [write_mp4(tmp_path / f"c{i}.mp4", frames(2)) for i in range(5)]
    outcomes = run_batch(clips, [style], tmp_path / "out", Options(weights="random"), workers=2,
                         use_ray=True)
    assert [o.status for o in outcomes] == ["done"] * 5
    assert len(seen) == 5 and max(seen) == 2


@pytest.mark.parametrize("name, value", [("workers", 0), ("chunk_frames", -5)])
def test_batch_refuses_counts_below_one(style, tmp_path, name, value):
    clip = write_mp4(tmp_path / "clip.mp4", frames(3))
    with pytest.raises(VStyleError, match=f"^{name} must be at least 1"):
        run_batch([clip], [style], tmp_path / "out", Options(weights="random"), **{name: value})
    assert not (tmp_path / "out").exists()


def test_batch_blends_the_last_paths_as_styles_and_says_when_paths_are_missing(style, tmp_path):
    clip = write_mp4(tmp_path / "clip.mp4", frames(3))
    other = tmp_path / "other.png"
    Image.fromarray(frames(1, 40, 40)[0]).save(other)
    result = run_cli("batch", clip, style, other, "-o", tmp_path / "out", "--style-blend",
                     "0.7,0.3", *FAST)
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert made == [f"clip-{style.stem}+other.mp4"]  # one output; the painting is no input
    result = run_cli("batch", style, other, "-o", tmp_path / "out2", "--style-blend", "1,1",
                     *FAST)
    assert result.returncode == 1 and "vstyle batch takes INPUTS... then 2 style images" in \
        result.stderr and "Traceback" not in result.stderr
    result = run_cli("batch", clip, clip, style, "-o", tmp_path / "out3", "--style-blend", "1,1",
                     *FAST)  # one weight too many: a clip would be taken for a painting
    assert result.returncode == 1 and f"{clip} is no style image, yet the last 2 paths are " \
        "the styles" in result.stderr and not (tmp_path / "out3").exists()


def test_batch_paints_every_input_with_each_painting_of_a_style_folder(three_clips, style,
                                                                        tmp_path):
    paintings = tmp_path / "paintings"
    paintings.mkdir()
    Image.open(style).save(paintings / "p1.png")
    Image.fromarray(frames(1, 40, 40)[0]).save(paintings / "p2.jpg")
    (paintings / "notes.txt").write_text("not a painting")  # left alone
    (three_clips / "b.gif").unlink()
    out = tmp_path / "out"
    result = run_cli("batch", three_clips, paintings, "-o", out, *FAST[:-1])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, "a-p1.mp4", "a-p2.mp4"]
    assert imageio_ffmpeg.count_frames_and_secs(str(out / "a-p2.mp4"))[0] == 4
    failures = [l for l in result.stderr.splitlines() if l.startswith("failed:")]
    assert len(failures) == 1 and failures[0].startswith(  # the same error for both: said once
        f"failed: {three_clips / 'c.mp4'} with each of 2 paintings: video ")
    assert "error: 2 of 4 outputs failed" in result.stderr
    # a painting added later: a rerun paints that one alone (the library reads the folder too)
    Image.fromarray(frames(1, 40, 40)[0][::-1]).save(paintings / "p3.png")
    images = [Image.fromarray(f) for f in frames(2)]  # an animation is no painting: said
    images[0].save(paintings / "moving.png", save_all=True, append_images=images[1:])
    with pytest.warns(VStyleWarning, match=r"style folder .*paintings: left out moving.png "):
        again = run_batch([three_clips / "a.mp4"], str(paintings), out, Options(
            weights="random", size=32, iterations=3, first_iterations=4))  # FAST's
    assert sorted((o.output.name, o.status) for o in again) == \
        [("a-p1.mp4", "skipped"), ("a-p2.mp4", "skipped"), ("a-p3.mp4", "done")]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("batch", three_clips, empty, "-o", tmp_path / "out2", *FAST)
    assert result.returncode == 1 and not (tmp_path / "out2").exists()
    assert result.stderr.strip() == f"error: style folder {empty} holds no still image: the " \
        "last path is the style, one painting or a folder of paintings"
    # a folder of clips given last, the style forgotten; OUTDIR among the paintings
    with pytest.raises(VStyleError, match=r"style folder .*clips holds no still image, only "
                                          r"a.mp4 and c.mp4: the last path is the style"):
        run_batch([paintings / "p1.png"], three_clips, tmp_path / "out3", TINY)
    with pytest.raises(VStyleError, match="the outputs would land among the paintings in"):
        run_batch([three_clips / "a.mp4"], paintings, paintings, TINY)
    assert not (tmp_path / "out3").exists() and len(list(paintings.iterdir())) == 5


def test_plan_opens_an_input_once_for_all_its_looks_and_fails_clashing_ones(style, tmp_path,
                                                                            monkeypatch):
    clip = write_mp4(tmp_path / "clip.mp4", frames(3))
    wave_png, wave_jpg, other = tmp_path / "wave.png", tmp_path / "wave.jpg", tmp_path / "o.png"
    for path in (wave_png, wave_jpg, other):
        Image.open(style).convert("RGB").save(path)
    opened = []
    real_open = media.open_source
    monkeypatch.setattr(media, "open_source", lambda *a: opened.append(a[0]) or real_open(*a))
    monkeypatch.setattr(media, "LONG_COUNT", 1)  # every video "long": its count is announced
    said = []
    outcomes, jobs = plan([clip], [[wave_png], [other], [wave_jpg], [style, other]],
                          tmp_path / "out", TINY, None, on_notice=said.append)
    assert opened == [clip] and len(said) == 1 and said[0].startswith("counting the frames")
    assert [(o.output.name, o.status) for o in outcomes] == [
        ("clip-wave.mp4", "failed"), ("clip-o.mp4", "pending"), ("clip-wave.mp4", "failed"),
        ("clip-style+o.mp4", "pending")]
    assert outcomes[0].error.startswith(f"{clip} with {wave_png} and {clip} with {wave_jpg} "
                                        f"would both write {tmp_path / 'out' / 'clip-wave.mp4'}")
    assert [job.styles for job in jobs] == [[other], [style, other]]


def test_batch_into_a_folder_it_cannot_make_is_one_line(style, tmp_path):
    clip = write_mp4(tmp_path / "clip.mp4", frames(3))
    (tmp_path / "afile").write_text("not a folder")
    result = run_cli("batch", clip, style, "-o", tmp_path / "afile" / "out", *FAST)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot write to {tmp_path / 'afile' / 'out'}" in result.stderr
    assert "choose a writable folder for the outputs" in result.stderr


def test_chunks_overlap_and_cover_every_frame(tmp_path):
    jobs = chunk_jobs(tmp_path / "in.mp4", tmp_path / "out.mp4", n_frames=23, chunk=10)
    assert [j.frame_range for j in jobs] == [(0, 10), (10 - OVERLAP, 20), (20 - OVERLAP, 23)]
    kept = [f for j in jobs for f in range(j.frame_range[0] + j.keep_from, j.frame_range[1])]
    assert kept == list(range(23))


def test_chunked_run_matches_an_unchunked_one(style, tmp_path):
    clip = with_audio(write_mp4(tmp_path / "v.mp4", frames(12)), tmp_path / "long.mp4")
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    assert run_cli("batch", clip, style, "-o", whole, *FAST).returncode == 0
    result = run_cli("batch", clip, style, "-o", chunked, "--chunk-frames", 5, "--workers", 2,
                     *FAST)
    assert result.returncode == 0, result.stderr
    assert "warning: --chunk-frames 5: each chunk after the first also paints the 5 frames " \
        "before it, to blend the join, so chunks this short redo 100% more frames" in result.stderr
    assert sorted(p.name for p in chunked.iterdir()) == [LEDGER, "long-style.mp4"]  # no chunks left
    a, b = whole / "long-style.mp4", chunked / "long-style.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(b))[0] == 12
    meta_a, meta_b = iio.immeta(a), iio.immeta(b)
    assert meta_b["fps"] == meta_a["fps"] == pytest.approx(12)
    assert meta_b["audio_codec"] == meta_a["audio_codec"]
    assert meta_b["duration"] == pytest.approx(meta_a["duration"], abs=0.05)


def test_a_chunked_batch_cuts_every_input_at_start(style, tmp_path):
    clip = with_audio(write_mp4(tmp_path / "v.mp4", frames(12)), tmp_path / "long.mp4")
    result = run_cli("batch", clip, style, "-o", tmp_path / "out", "--chunk-frames", 5,
                     "--start", "0.25", *FAST)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "long-style.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 9  # frames 3..11
    assert "audio_codec" in iio.immeta(out)


def test_plan_leaves_out_its_own_outputs_and_fails_clashing_inputs(style, tmp_path):
    clips = tmp_path / "clips"
    for folder in ("a", "b"):
        (clips / folder).mkdir(parents=True)
        write_mp4(clips / folder / "clip.mp4", frames(3))
    write_mp4(clips / "x.mp4", frames(3))
    write_mp4(clips / "x-style.mp4", frames(3))  # an earlier batch's output, OUTDIR = clips
    inputs = expand_inputs([clips, clips / "a" / "clip.mp4", clips / "b" / "clip.mp4",
                            clips / "x.mp4"])  # x.mp4 twice: one input
    with pytest.warns(VStyleWarning, match="x-style.mp4 exists and no vstyle batch made it"):
        outcomes, jobs = plan(inputs, [[style]], clips, Options(weights="random"), None)
    assert [(o.input.name, o.status, o.error[:23]) for o in outcomes] == [
        ("x-style.mp4", "skipped", "an output of this batch"),
        ("x.mp4", "skipped", "exists, not made by vst"),
        ("clip.mp4", "failed", f"{clips / 'a' / 'clip.mp4'}"[:23]),
        ("clip.mp4", "failed", f"{clips / 'b' / 'clip.mp4'}"[:23])]
    assert "would both write" in outcomes[2].error and not jobs


def test_chunks_of_another_plan_are_not_reused(style, tmp_path):
    clip = write_mp4(tmp_path / "long.mp4", frames(12))
    out = tmp_path / "out"
    out.mkdir()
    options = Options(weights="random", size=32)
    def chunks(options, size):  # plan, then finish its chunks as an interrupted batch would
        _, jobs = plan([clip], [[style]], out, options, size)
        for job in jobs:
            job.output.mkdir(exist_ok=True)
        return {job.output for job in jobs}

    first = chunks(options, 5)
    assert chunks(options, 5) == first and all(path.exists() for path in first)  # reused
    for changed in (dict(size=6), dict(options=options.replace(style_weight=10.0))):
        again = chunks(changed.get("options", options), changed.get("size", 5))
        assert not again & first
        assert set(out.iterdir()) == again  # the earlier plan's chunks are gone
        first = again


def test_a_chunk_another_batch_is_running_is_not_removed(style, tmp_path):
    from vstyle.video import default_work_dir
    from vstyle.workdir import WorkDir
    clip = write_mp4(tmp_path / "long.mp4", frames(12))
    out = tmp_path / "out"
    out.mkdir()
    _, jobs = plan([clip], [[style]], out, Options(weights="random", size=32), 5)
    running = WorkDir(default_work_dir(jobs[0].output), {"version": 0})  # mid-run elsewhere
    _, jobs = plan([clip], [[style]], out, Options(weights="random", size=32), 6)  # another plan
    assert running.path.exists()
    running.close()
    plan([clip], [[style]], out, Options(weights="random", size=32), 6)
    assert not running.path.exists()


@pytest.mark.parametrize("flag", ["loop", "preserve_colors"])
def test_chunks_refuse_options_that_need_the_whole_clip(style, tmp_path, flag):
    clip = write_mp4(tmp_path / "long.mp4", frames(12))
    with pytest.raises(VStyleError, match="need each clip in one piece.*leave out chunk_frames"):
        run_batch([clip], [style], tmp_path / "out", Options(weights="random", **{flag: True}),
                  chunk_frames=5)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", ["2", "1"])  # 1: the job runs in the batch's own process
def test_kill_stops_a_batch_with_workers(style, tmp_path, workers):
    inputs = [write_mp4(tmp_path / f"{k}.mp4", frames(30)) for k in "abcd"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "batch", *map(str, inputs), str(style), "-o",
         str(out), "--workers", workers, "--size", "32", "--first-iterations", "50", "--iterations",
         "50", "--tol", "0", "--quiet"], env={**os.environ, "VSTYLE_WEIGHTS": "random"},
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".*.vstyle-work/00001.png")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the workers are stylizing
        assert list(out.glob(".*.vstyle-work/00001.png")), "no worker finished a frame in 120 s"
        proc.send_signal(signal.SIGTERM)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of a failed stop
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "interrupted: run the same command again" in stderr
    assert time.monotonic() - killed < 30  # not after every queued input has run
    assert "Traceback" not in stderr
    work = list(out.glob(".*.vstyle-work"))
    assert 1 <= len(work) <= 2 and not list(out.glob("*.mp4"))  # queued inputs never started
    frames_now = sorted(str(p) for p in out.rglob("*.png"))
    time.sleep(2)
    assert sorted(str(p) for p in out.rglob("*.png")) == frames_now  # no worker goes on
