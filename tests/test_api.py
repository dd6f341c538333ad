"""The Python API as a script or a notebook uses it: option values of the wrong type, events
for a progress bar of one's own, Ctrl-C in a loop over clips, warnings that point at the
caller, and the types each function takes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vstyle
from conftest import frames

TINY = dict(size=32, iterations=3, first_iterations=4, min_iterations=0, weights="random")


@pytest.mark.parametrize("values, says", [
    (dict(size="256"), "size='256': pass a whole number"),
    (dict(size=2.5), "size=2.5: pass a whole number"),
    (dict(style_weight="1e4"), "style_weight='1e4': pass a number"),
    (dict(tol=None), "tol=None: pass a number"),
    (dict(preserve_colors="no"), "preserve_colors='no': pass True or False"),  # "no" is truthy
    (dict(weights=None), "weights=None: pass a string")])
def test_an_option_of_the_wrong_type_is_refused_by_name(values, says):
    with pytest.raises(vstyle.VStyleError, match=f"^{re.escape(says)}$"):
        vstyle.Options(**values)
    with pytest.raises(vstyle.VStyleError, match=re.escape(says)):
        vstyle.stylize_image(frames(1)[0], frames(1)[0], **{**TINY, **values})


def test_numpy_numbers_and_whole_floats_are_taken_as_python_ones():
    o = vstyle.Options(size=np.int64(48), style_weight=np.float32(2), iterations=30.0,
                       loop=np.bool_(True), style_blend=np.array([0.7, 0.3]))
    assert (o.size, o.style_weight, o.iterations, o.loop, o.style_blend) == (48, 2.0, 30, True,
                                                                            (0.7, 0.3))
    assert [type(v) for v in (o.size, o.style_weight, o.iterations, o.loop)] == \
        [int, float, int, bool]
    o.validate()  # the size check counts bits of an int: a numpy int had none


def test_an_unknown_option_or_a_dict_for_options_is_a_type_error_that_says_so(tmp_path):
    with pytest.raises(TypeError, match="unknown option 'iteration': did you mean 'iterations'"):
        vstyle.stylize_image(frames(1)[0], frames(1)[0], iteration=3)
    with pytest.raises(TypeError, match="unknown option 'iteration': did you mean 'iterations'"):
        vstyle.Options(iteration=3)
    with pytest.raises(TypeError, match="unknown option 'colour'$"):
        vstyle.Options().replace(colour=True)
    with pytest.raises(TypeError, match=r"options must be a vstyle.Options, not dict \(or pass "
                                        "them as keywords"):
        vstyle.stylize(tmp_path / "clip.mp4", tmp_path / "style.png", None, {"size": 32})
    # the functions' own keywords, misspelt, are found too
    with pytest.raises(TypeError, match="unknown option 'on_evnt': did you mean 'on_event'"):
        vstyle.stylize(tmp_path / "clip.mp4", tmp_path / "style.png", on_evnt=print)
    with pytest.raises(TypeError, match="unknown option 'reprot': did you mean 'report'"):
        vstyle.stylize(tmp_path / "clip.mp4", tmp_path / "style.png", reprot="r.json")
    with pytest.raises(TypeError, match="unknown option 'on_evnt': did you mean 'on_event'"):
        vstyle.stylize_image(frames(1)[0], frames(1)[0], on_evnt=print)


@pytest.mark.parametrize("given, says", [
    (dict(restart="no"), "restart='no': pass True or False"),  # "no" is truthy: it restarted
    (dict(keep_work=1), "keep_work=1: pass True or False"),
    (dict(output=123), "output=123: pass a path"),
    (dict(report=5), "report=5: pass a path"),
    (dict(work_dir=[1]), r"work_dir=\[1\]: pass a path"),
    (dict(on_event=5), "on_event=5: pass a function, called with each vstyle.Event"),
    (dict(frame_range=3), r"frame_range=3: pass \(start, end\), frames counted from 0"),
    (dict(frame_range=(2, 1)), r"frame_range=\(2, 1\): pass \(start, end\)")])
def test_stylize_refuses_its_own_arguments_of_the_wrong_type_by_name(clip, style, tmp_path,
                                                                     given, says):
    with pytest.raises(vstyle.VStyleError, match=f"^{says}"):
        vstyle.stylize(clip, style, **{"output": tmp_path / "out.gif", **given, **TINY})
    assert list(tmp_path.glob("*out*")) == []


def test_stylize_says_it_takes_paths_where_an_array_is_given(clip, style, tmp_path):
    with pytest.raises(vstyle.VStyleError, match="a style of type ndarray: stylize takes image "
                                                 r"paths \(stylize_image also takes arrays\)"):
        vstyle.stylize(clip, frames(1)[0], tmp_path / "out.gif", **TINY)
    with pytest.raises(vstyle.VStyleError, match="an input of type NoneType: stylize takes the "
                                                 "path of a video"):
        vstyle.stylize(None, style, tmp_path / "out.gif", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "style.png"]


def test_events_tell_frames_apart_from_their_start_and_count_each_frame_once(clip, style,
                                                                              tmp_path):
    events = []
    vstyle.stylize(clip, style, tmp_path / "out.gif", max_frames=3, on_event=events.append,
                   **TINY)
    kinds = [e.kind for e in events if e.kind != "step"]
    assert kinds == ["start", "frame_start", "frame", "frame_start", "frame", "frame_start",
                     "frame", "encode"]
    done = [e for e in events if e.kind == "frame"]
    assert [e.frame for e in done] == [1, 2, 3] and all(e.stats.iterations for e in done)
    steps = [e for e in events if e.kind == "step" and e.frame == 1]
    assert [e.iteration for e in steps] == list(range(1, len(steps) + 1))


def test_stylize_image_reports_progress_and_takes_pillow_images():
    content = Image.fromarray(frames(1)[0])
    palette = Image.fromarray(frames(1)[0][::-1]).convert("P")  # its array holds indices
    events = []
    image = vstyle.stylize_image(content, palette, on_event=events.append, **TINY)
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    assert [e.kind for e in events if e.kind != "step"] == ["start", "frame_start", "frame"]
    steps = [e.iteration for e in events if e.kind == "step"]
    assert steps and steps == list(range(1, len(steps) + 1))
    assert events[-1].stats.iterations == len(steps)


def test_ctrl_c_is_not_swallowed_by_a_loop_that_catches_exception(clip, style, tmp_path):
    def stop(event):
        if event.kind == "frame":
            raise KeyboardInterrupt
    went_on = []
    with pytest.raises(vstyle.Interrupted, match="1 of 3 frames is kept"):
        for out in ("a.gif", "b.gif"):
            try:
                vstyle.stylize(clip, style, tmp_path / out, max_frames=3, on_event=stop, **TINY)
            except Exception:  # a script's "log it and go on to the next clip"
                went_on.append(out)
    assert went_on == []
    with pytest.raises(vstyle.Interrupted, match="interrupted: nothing was written"):
        vstyle.stylize_image(frames(1)[0], style, on_event=stop, **TINY)


def test_warnings_point_at_the_callers_line(recwarn):
    vstyle.stylize_image(frames(1)[0], np.zeros((4, 4, 3), np.uint8), **TINY)
    said = [w for w in recwarn if issubclass(w.category, vstyle.VStyleWarning)]
    assert {w.message.args[0].split(":")[0] for w in said} >= {"random VGG19 weights",
                                                                "a style image of 4x4 px is "
                                                                "enlarged to 32x32 for this run"}
    assert {w.filename for w in said} == {__file__}


def test_stylize_image_says_which_options_it_ignores():
    with pytest.warns(vstyle.VStyleWarning, match=r"ignored by stylize_image: iterations, "
                                                  r"compare \(one image is painted once, from "
                                                  "scratch: first_iterations sets its"):
        vstyle.stylize_image(frames(1)[0], frames(1)[0], compare=True,
                             **{**TINY, "iterations": 50})
    # said once: not also "temporal_weight needs warm_start='flow'", which no image takes
    with pytest.warns(vstyle.VStyleWarning) as said:
        vstyle.stylize_image(frames(1)[0], frames(1)[0], warm_start="previous",
                             temporal_weight=5.0, **TINY)
    assert [str(w.message) for w in said if "ignored" in str(w.message)] == [
        "ignored by stylize_image: iterations, warm_start, temporal_weight (one image is "
        "painted once, from scratch: first_iterations sets its iterations)"]


def test_one_frame_says_iterations_is_ignored(clip, style, tmp_path):
    # frame 1 has no warm start: --first-iterations sets it, --iterations only later frames
    with pytest.warns(vstyle.VStyleWarning) as said:
        vstyle.stylize(clip, style, tmp_path / "look.png", max_frames=1, loop=True, crf=30,
                       **TINY)
    assert (tmp_path / "look.png").exists()
    assert [str(w.message) for w in said if "ignored" in str(w.message)] == [
        "ignored: crf=30 (an MP4's quality)",
        "ignored: iterations=3 and loop=True (one frame is painted once, from scratch: "
        "first_iterations sets its iterations)"]
    with pytest.warns(vstyle.VStyleWarning, match=r"^ignored: gif_dither='none' \(a GIF's "):
        vstyle.stylize(clip, style, tmp_path / "out.mp4", max_frames=2, gif_dither="none",
                       **TINY)


def test_messages_name_options_as_python_keywords(clip, style, tmp_path):
    # the command line's tests see the same messages with flags (--start 60 s ...)
    with pytest.raises(vstyle.VStyleError) as error:
        vstyle.stylize(clip, style, tmp_path / "out.gif", start=60, weights="random")
    assert str(error.value).startswith("start=60 s is past the last frame of video")
    assert str(error.value).endswith("pass an earlier start")
    with pytest.raises(vstyle.VStyleError, match=r"^end must come after start \(got 0.2 s, "
                                                 r"start=0.5 s\)$"):
        vstyle.Options(start=0.5, end=0.2).validate()
    with pytest.warns(vstyle.VStyleWarning, match=r"^ignored: style_scale \(style_size sets "):
        vstyle.Options(style_size=64, style_scale=2.0).validate()
    if not torch.cuda.is_available():
        with pytest.raises(vstyle.VStyleError, match=r"^device='cuda' asked for, but no CUDA "
                                                     r"GPU is visible: use device='cpu' "
                                                     r"\(or device='auto'\)$"):
            vstyle.stylize(clip, style, tmp_path / "out.gif", device="cuda", weights="random")
    with pytest.raises(vstyle.VStyleError, match=r"is a video: the input comes first, then the "
                                                 r"style \(stylize\(input, style, output\)\)$"):
        vstyle.stylize(style, clip, tmp_path / "out.gif")
    assert not list(tmp_path.glob("*out*"))


def test_huge_numbers_empty_pillow_images_and_path_weights():
    with pytest.raises(vstyle.VStyleError, match="^size must be at most 8192"):
        vstyle.Options(size=10 ** 400).validate()
    with pytest.raises(vstyle.VStyleError, match=r"style_weight=1000.*: too large"):
        vstyle.Options(style_weight=10 ** 400)
    with pytest.raises(vstyle.VStyleError, match=r"content is an empty image \(0x0 px\)"):
        vstyle.stylize_image(Image.new("RGB", (0, 0)), frames(1)[0], **TINY)
    assert vstyle.Options(weights=Path("vgg19.pth")).weights == "vgg19.pth"
