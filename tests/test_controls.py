"""Artistic controls and output modes: --compare, --preserve-colors, --scales, --pooling, --loop."""

from __future__ import annotations

import re
import warnings

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
import torch

import vstyle
from conftest import frames, write_gif, write_mp4
from vstyle import media
from vstyle.flow import FlowEstimator
from vstyle.metrics import pair_error
from vstyle.optimize import Stylizer
from vstyle.vgg import VGGFeatures, load_features

pytestmark = pytest.mark.filterwarnings("ignore::vstyle.VStyleWarning")
TINY = dict(size=32, iterations=3, first_iterations=4, min_iterations=0, weights="random")


def test_compare_is_three_panels_wide(clip, style, tmp_path):
    out = tmp_path / "compare.gif"
    vstyle.stylize(clip, style, out, compare=True, max_frames=5, **TINY)
    n, _, _, _ = media.gif_info(out)
    first = iio.imread(out, index=0)
    assert n == 5 and first.shape[:2] == (24, 3 * 32)
    content = next(media.open_source(clip).frames((32, 24))).astype(float)
    assert np.abs(first[:, :32].astype(float) - content).mean() < 12  # left: the content


def test_compare_shows_every_style(clip, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    iio.imwrite(red, np.full((40, 40, 3), (220, 30, 30), np.uint8))
    iio.imwrite(blue, np.full((40, 40, 3), (30, 30, 220), np.uint8))
    out = tmp_path / "compare"  # PNG frames: colours exact
    vstyle.stylize(clip, [red, blue], out, compare=True, max_frames=2, **{**TINY, "size": 64})
    panel = iio.imread(out / "00001.png")[:, 64:128].astype(int)
    assert panel.shape[:2] == (48, 64)
    top, bottom = panel[10:14, 28:36].mean((0, 1)), panel[34:38, 28:36].mean((0, 1))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # red above, blue below


def test_preserve_colors_keeps_the_content_chroma(style):
    content = frames(1, 64, 48)[0]
    styled = vstyle.stylize_image(content, media.load_image(style), preserve_colors=True,
                                  style_weight=1e5, **{**TINY, "size": 64, "first_iterations": 15})
    plain = vstyle.stylize_image(content, media.load_image(style),
                                 style_weight=1e5, **{**TINY, "size": 64, "first_iterations": 15})

    def chroma(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(float)
    kept = np.abs(chroma(styled) - chroma(content)).mean()
    drifted = np.abs(chroma(plain) - chroma(content)).mean()
    assert kept < 2.0 and kept < drifted / 2


def test_stylize_image_takes_grey_and_float_arrays_and_refuses_others(clip, style):
    grey = cv2.cvtColor(frames(1, 64, 48)[0], cv2.COLOR_RGB2GRAY)  # (48, 64)
    painting = media.load_image(style).astype(np.float32) / 255  # fractions of 1
    styled = vstyle.stylize_image(grey, painting, **TINY)
    assert styled.dtype == np.uint8 and styled.shape == (24, 32, 3)
    with pytest.raises(vstyle.VStyleError, match="content is an array of shape .*pass an RGB"):
        vstyle.stylize_image(np.zeros((2, 48, 64, 3), np.uint8), painting, **TINY)
    # a style may be a path; none at all is an error of its own
    by_path = vstyle.stylize_image(grey, style, **{**TINY, "iterations": 1, "first_iterations": 1})
    assert by_path.shape == (24, 32, 3)
    with pytest.raises(vstyle.VStyleError, match="no style image given"):
        vstyle.stylize_image(grey, [], **TINY)
    # so may the content, as in the README; anything else that is no array says what it is
    photo = style.parent / "photo.png"
    iio.imwrite(photo, frames(1, 64, 48)[0])
    assert vstyle.stylize_image(photo, style, **{**TINY, "iterations": 1,
                                                 "first_iterations": 1}).shape == (24, 32, 3)
    with pytest.raises(vstyle.VStyleError, match="content image .*nothing.png not found"):
        vstyle.stylize_image(style.parent / "nothing.png", style, **TINY)
    with pytest.raises(vstyle.VStyleError, match="content image .*clip.mp4 is a video: "
                                                 "stylize_image takes one image"):
        vstyle.stylize_image(clip, style, **TINY)
    write_gif(style.parent / "anim.gif", frames(2), [100, 100])
    with pytest.raises(vstyle.VStyleError, match=r"content image .*anim.gif is an animated GIF "
                                                 r"\(2 frames\): stylize_image takes one image"):
        vstyle.stylize_image(style.parent / "anim.gif", style, **TINY)
    with Image.open(style.parent / "anim.gif") as opened:  # the same, opened by Pillow
        with pytest.raises(vstyle.VStyleError, match=r"^content is an animated image \(2 "
                                                     r"frames\): stylize_image takes one"):
            vstyle.stylize_image(opened, style, **TINY)
    iio.imwrite(style.parent / "one.gif", frames(1, 64, 48)[0])  # a picture
    assert vstyle.stylize_image(photo, style.parent / "one.gif", **{
        **TINY, "first_iterations": 1}).shape == (24, 32, 3)
    with pytest.raises(vstyle.VStyleError, match="content is of type NoneType, not an image: pass a "
                                                 "numpy array"):
        vstyle.stylize_image(None, style, **TINY)


@pytest.mark.parametrize("size", [(64, 48), (200, 150), (90, 160), (1920, 1080), (16, 16)])
def test_the_least_size_suggested_is_the_least_that_works(size):
    least = media.min_long_side(size)
    assert media.frame_size(size, least)  # no error
    with pytest.raises(vstyle.VStyleError, match=f"use size={least} or more"):
        media.frame_size(size, least - 1)


def test_a_small_style_size_keeps_the_paintings_shape():
    from vstyle.video import fit_style
    painting = np.zeros((640, 1024, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not "stretched": it is not
        fitted = fit_style(painting, vstyle.Options(size=48, style_scale=0.1), (48, 36),
                           painting)
    assert fitted.shape[:2] == (16, 25)


@pytest.mark.parametrize("shape, says", [
    ((4, 4, 3), "a style image of 4x4 px is enlarged to 32x32 for this run: its texture will be "
                "blurred"),
    ((3, 600, 3), "a style image of 600x3 px is stretched to 32x16 (VGG19 needs 16 px a side)")])
def test_a_style_image_too_small_or_too_narrow_is_warned_of(shape, says):
    content = frames(1, 64, 48)[0]
    style = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    with pytest.warns(vstyle.VStyleWarning, match=re.escape(says)):
        vstyle.stylize_image(content, style, **{**TINY, "iterations": 1, "first_iterations": 1})


@pytest.mark.parametrize("values, says", [
    (dict(style_size=64, style_scale=2.0), "ignored: style_scale (style_size sets"),
    (dict(min_iterations=20, iterations=6), "ignored: min_iterations=20 on the frames after"),
    (dict(warm_start="previous", temporal_frames=(1, 2)), "ignored: temporal_frames (the "
                                                          "temporal loss follows the optical"),
    (dict(warm_start="none", temporal_weight=50.0), "ignored: temporal_weight (the temporal "
                                                    "loss follows the optical flow: it needs "
                                                    "warm_start='flow')"),
    (dict(temporal_frames=(1, 2), temporal_weight=0.0), "ignored: temporal_frames "
                                                        "(temporal_weight=0 turns")])
def test_an_option_another_makes_moot_is_said_to_be_ignored(values, says):
    with pytest.warns(vstyle.VStyleWarning, match=re.escape(says)) as said:
        vstyle.Options(**values).validate()
    assert said[0].filename == __file__  # the caller's line, not one inside vstyle
    with warnings.catch_warnings():  # the defaults, and a low ceiling alone, say nothing
        warnings.simplefilter("error")
        vstyle.Options(iterations=3, warm_start="previous").validate()
        # --loop's pull towards frame 1 is weighed by --temporal-weight in any warm start
        vstyle.Options(loop=True, warm_start="previous", temporal_weight=0.0).validate()


def test_style_layer_weights_all_zero_are_refused():
    with pytest.raises(vstyle.VStyleError, match="style_layer_weights needs at least one "
                                                 "weight above 0"):
        vstyle.Options(style_layer_weights=(0, 0, 0, 0, 0)).validate()


def test_python_callers_may_pass_one_value_for_a_tuple_option(clip, style, tmp_path):
    o = vstyle.Options(style_layers="conv1_1, conv2_1", content_layers="conv4_2",
                       temporal_frames=2, style_blend=0.5)
    assert (o.style_layers, o.content_layers, o.temporal_frames, o.style_blend) == (
        ("conv1_1", "conv2_1"), ("conv4_2",), (2,), (0.5,))
    with pytest.raises(vstyle.VStyleError, match="temporal_frames='a,b': pass int values"):
        vstyle.Options(temporal_frames="a,b")
    with pytest.raises(vstyle.VStyleError, match=r"frame_range=\(5, 2\): pass \(start, end\)"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", frame_range=(5, 2), **TINY)
    with pytest.raises(vstyle.VStyleError, match=r"frame_range=\(9, 12\): pass \(start, end\) "
                                                 r"with .* below the 8 frames"):
        vstyle.stylize(clip, style, tmp_path / "out.gif", frame_range=(9, 12), **TINY)
    assert not list(tmp_path.glob("*out*"))


@pytest.mark.parametrize("text, seconds", [("90", 90), ("7.5", 7.5), ("1:30", 90),
                                           ("0:01:30.5", 90.5), (" 2:00 ", 120), (3, 3)])
def test_start_and_end_take_seconds_or_clock_times(text, seconds):
    assert vstyle.Options(start=text, end=text).start == seconds


@pytest.mark.parametrize("text", ["x", "1:70", "-3", "1:2:3:4", "", "1:-5"])
def test_a_start_that_is_no_time_is_refused(text):
    with pytest.raises(vstyle.VStyleError, match=r"start='.*' is not a time: pass seconds"):
        vstyle.Options(start=text)


def test_scales_run_the_first_frame_coarse_to_fine(clip, style, tmp_path, monkeypatch):
    sizes = []
    original = Stylizer.stylize

    def spy(self, content, init, *args, **kwargs):
        sizes.append(tuple(content.shape[-2:]))
        return original(self, content, init, *args, **kwargs)
    monkeypatch.setattr(Stylizer, "stylize", spy)
    events = []
    vstyle.stylize(clip, style, tmp_path / "out", max_frames=2, scales=2, **{**TINY, "size": 64},
                   on_event=events.append)
    assert sizes == [(24, 32), (48, 64), (48, 64)]  # frame 1 at two scales, frame 2 at full
    steps = [(e.iteration, e.max_iterations) for e in events if e.kind == "step" and e.frame == 1]
    assert steps == [(i, 8) for i in range(1, 9)]  # progress counts on across the scales


def test_average_pooling_replaces_max_pooling():
    features = load_features("random", seed=0)
    avg = VGGFeatures(features, ["conv3_1"], pooling="avg")
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in avg.net)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in avg.net)
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(avg(x)["conv3_1"], VGGFeatures(features, ["conv3_1"])(x)["conv3_1"])


@pytest.mark.parametrize("error, message", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out of GPU memory.*smaller size or device='cpu'"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 4000000000000 bytes"),
     "out of memory at size=32.*smaller size"),
    (MemoryError(), "out of memory at size=32")], ids=["gpu", "cpu", "numpy"])
def test_out_of_memory_is_one_line_with_a_fix(clip, style, tmp_path, monkeypatch, error,
                                              message):
    def oom(*args, **kwargs):
        raise error
    monkeypatch.setattr(Stylizer, "stylize", oom)
    with pytest.raises(vstyle.VStyleError, match=message):
        vstyle.stylize(clip, style, tmp_path / "out.gif", **TINY)
    assert not (tmp_path / "out.gif").exists()
    assert not list(tmp_path.glob(".out.gif*"))  # no work folder, no temp file


def circling(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    """A ball going once round a circle on a still background: frame n would be frame 0."""
    base = frames(1, w, h)[0]
    out = []
    for t in range(n):
        image = base.copy()
        a = 2 * np.pi * t / n
        cv2.circle(image, (int(w / 2 + 12 * np.cos(a)), int(h / 2 + 10 * np.sin(a))), 6,
                   (250, 250, 40), -1)
        out.append(image)
    return out


def test_loop_closes_the_seam(style, tmp_path):
    clip = write_mp4(tmp_path / "loop.mp4", circling(8))
    settings = dict(TINY, size=48, iterations=15, first_iterations=20, style_weight=1e5,
                    warm_start="flow", temporal_weight=0.0)
    seams = {}
    for loop in (False, True):
        out = tmp_path / f"loop{loop}"
        vstyle.stylize(clip, style, out, loop=loop, **settings)
        results = [media.load_image(p) for p in media.written_frames(out)]
        inputs = list(media.open_source(clip).frames((48, 36)))
        warp = FlowEstimator().warp(inputs[-1], inputs[0])  # the seam: last frame -> first
        seams[loop] = pair_error(warp, results[-1], results[0])
    assert seams[True] < 0.7 * seams[False], seams
