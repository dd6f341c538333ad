"""The `vstyle` command as a user runs it: bad inputs and the CLI contract.

Every bad input ends with exit code != 0, one `error:` line on stderr that names the problem and
the fix (no traceback, never wrapped), and nothing written: no output, no temporary files, no work
folder. Odd but valid inputs (grey, RGBA, paletted, 16-bit or huge style images; image folders of
mixed sizes; an output folder that does not exist yet) work.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import conftest
from conftest import FAST, frames
import vstyle
from vstyle import media
from vstyle.options import Options

RANDOM_WEIGHTS_WARNING = "warning: random VGG19 weights"
VGG19_CONVS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
               512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def run_cli(*args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """conftest.run_cli on one thread: the frames here are tiny, and torch's threads spinning
    against other busy processes made a 5 s run take 40 s."""
    return conftest.run_cli(*args, env={"OMP_NUM_THREADS": "1", **(env or {})}, **kwargs)


def listing(folder: Path) -> list[str]:
    """Every path under folder, hidden ones included (temp files, work folders)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a failed run; anything else on stderr may only be the random-weights
    warning (it is printed when the network loads, before errors found later)."""
    assert result.returncode != 0, f"expected a failure, got exit 0\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith(RANDOM_WEIGHTS_WARNING)]
    assert len(errors) == 1, f"expected one error line, got:\n{result.stderr}"
    assert errors[0].startswith("error: "), result.stderr
    return errors[0]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def mp4_frames(path: Path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def ffmpeg(*args) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)],
                   check=True, capture_output=True)


# --- bad inputs ----------------------------------------------------------------------------------
# Each case builds its files in a folder that already holds clip.mp4 (8 frames) and style.png, and
# returns the arguments; the command runs in that folder. Then: the key phrases of the problem and
# of the fix that the error line must hold.

BAD: dict[str, tuple] = {}


def bad(name: str, *phrases: str):
    def register(setup):
        BAD[name] = (setup, phrases)
        return setup
    return register


@bad("missing input", "input missing.mp4 not found", "check the path")
def _(d: Path):
    return ["missing.mp4", "style.png", "-o", "out.gif"]


@bad("empty file", "empty.mp4 is empty (0 bytes)", "pass a complete file")
def _(d: Path):
    (d / "empty.mp4").touch()
    return ["empty.mp4", "style.png", "-o", "out.gif"]


@bad("truncated mp4", "video cut.mp4 cannot be decoded", "corrupt or truncated", "re-export")
def _(d: Path):
    data = (d / "clip.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) at the end is gone
    return ["cut.mp4", "style.png", "-o", "out.gif"]


@bad("mp4 with garbage frames", "video garbled.mp4 cannot be decoded", "re-export")
def _(d: Path):
    data = bytearray((d / "clip.mp4").read_bytes())
    start = data.find(b"mdat")  # the header stays intact; every coded frame becomes zeros
    size = int.from_bytes(data[start - 4:start], "big")
    data[start + 4:start - 4 + size] = bytes(size - 8)
    (d / "garbled.mp4").write_bytes(data)
    return ["garbled.mp4", "style.png", "-o", "out.gif"]


@bad("mp4 with zero frames", "video zero.mp4 has no video frames", "pass a video with pictures")
def _(d: Path):
    ffmpeg("-f", "lavfi", "-i", "color=size=64x48:rate=12", "-frames:v", "0", "-c:v", "libx264",
           d / "zero.mp4")
    return ["zero.mp4", "style.png", "-o", "out.gif"]


@bad("audio-only mp4", "video sound.mp4 has no video frames", "not an audio-only file")
def _(d: Path):
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", d / "sound.mp4")
    return ["sound.mp4", "style.png", "-o", "out.gif"]


@bad("text file named .gif", "notes.gif is not a readable GIF", "re-export it, or pass a video")
def _(d: Path):
    (d / "notes.gif").write_text("not a gif\n")
    return ["notes.gif", "style.png", "-o", "out.mp4"]


@bad("style is a text file", "style image painting.jpg is not an image", "pass a .jpg or .png")
def _(d: Path):
    (d / "painting.jpg").write_text("a painting, honest\n")
    return ["clip.mp4", "painting.jpg", "-o", "out.gif"]


@bad("missing style", "style image nope.png not found", "check the path")
def _(d: Path):
    return ["clip.mp4", "nope.png", "-o", "out.gif"]


@bad("folder without images", "folder shots has no images", ".bmp, .jpeg, .jpg, .png")
def _(d: Path):
    (d / "shots").mkdir()
    (d / "shots" / "readme.txt").write_text("frames go here\n")
    return ["shots", "style.png", "-o", "out.gif"]


@bad("folder of clips", "folder clips holds clips (a.mp4), not only frames",
     "`vstyle batch clips STYLE -o OUTDIR` or one by one")
def _(d: Path):
    (d / "clips").mkdir()
    shutil.copy(d / "clip.mp4", d / "clips" / "a.mp4")
    return ["clips", "style.png", "-o", "out.gif"]


@bad("folder with an animated WebP among its frames",
     "folder shots holds clips (c.webp) beside 2 frames", "move them out to stylize the frames")
def _(d: Path):
    (d / "shots").mkdir()
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (40, 200)]
    for i, frame in enumerate(frames):
        frame.save(d / "shots" / f"{i}.png")
    frames[0].save(d / "shots" / "c.webp", save_all=True, append_images=frames[1:], duration=100)
    return ["shots", "style.png", "-o", "out.gif"]


@bad("unsupported output extension", "output out.xyz: .xyz is not supported", "use .gif, .mp4")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.xyz"]


@bad("output under a file", "cannot write to", "choose a writable output folder")
def _(d: Path):
    (d / "taken").write_text("a file, not a folder\n")
    return ["clip.mp4", "style.png", "-o", "taken/out.gif"]


@bad("output is the input", "is the input itself", "choose another output name")
def _(d: Path):
    return [d / "clip.mp4", "style.png", "-o", "./clip.mp4"]  # two spellings of one file


@bad("output is a style image", "output style.png is a style image itself",
     "choose another output name")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "./style.png", "--max-frames", "1"]


@bad("--report is the input", "--report clip.mp4 is the input itself", "choose another --report")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--report", "clip.mp4"]


@bad("--report is a style image", "--report style.png is a style image itself")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--report", "style.png"]


@bad("--report is the output", "--report out.gif is the output itself", "e.g. report.json")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--report", "out.gif"]


@bad("style is a folder", "style image paintings is a folder: pass one of its paintings, or "
     "paint with each: vstyle batch INPUT paintings -o OUTDIR")
def _(d: Path):
    (d / "paintings").mkdir()
    shutil.copy(d / "style.png", d / "paintings" / "a.png")
    return ["clip.mp4", "paintings", "-o", "out.gif"]


@bad("still output for a clip", "out.png is a still image but the input has 8 frames",
     "write .gif, .webp, .mp4 or a folder (or add --max-frames 1 to try the look on the first frame)")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.png"]


@bad("--device cuda without a GPU", "--device cuda asked for, but no CUDA GPU is visible",
     "use --device cpu")
def _(d: Path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return ["clip.mp4", "style.png", "-o", "out.gif", "--device", "cuda"]


@bad("weights of the wrong shape", "weights file bad.pth has the wrong shape for 10.weight",
     "pass torchvision's vgg19-dcbb9e9d.pth")
def _(d: Path):
    import torch
    state, index, channels = {}, 0, 3
    for v in VGG19_CONVS:  # vgg19().features' keys and shapes, without building the model
        if v == "M":
            index += 1
            continue
        state[f"{index}.weight"] = torch.zeros(v, channels, 3, 3)
        state[f"{index}.bias"] = torch.zeros(v)
        index, channels = index + 2, v
    state["10.weight"] = torch.zeros(256, 128, 1, 1)  # conv3_1 with 1x1 kernels
    torch.save(state, d / "bad.pth")
    return ["clip.mp4", "style.png", "-o", "out.gif", "--weights", "bad.pth"]


@bad("--report inside a folder output", "--report out/00001.png is inside the output folder out",
     "write it beside, e.g. report.json")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out", "--report", "out/00001.png"]


@bad("--report under a file", "cannot write to taken (taken is a file)",
     "choose a writable folder for --report")
def _(d: Path):
    (d / "taken").write_text("a file, not a folder\n")
    return ["clip.mp4", "style.png", "-o", "out.gif", "--report", "taken/r.json"]


@bad("a refusal after the checks of new folders", "--work-dir new would hold the output")
def _(d: Path):  # the output's and the report's folders were checked, not made
    return ["clip.mp4", "style.png", "-o", "new/out.gif", "--report", "new/logs/r.json",
            "--work-dir", "new"]


@bad("--work-dir holding the output", "--work-dir w would hold the output w/out.gif",
     "put it elsewhere")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "w/out.gif", "--work-dir", "w"]


@bad("--end before --start", "--end must come after --start (got 0.2 s, --start 0.5 s)")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--start", "0.5", "--end", "0.2"]


@bad("--start past the end", "--start 60 s is past the last frame of video clip.mp4 (",
     "pass an earlier --start")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--start", "1:00"]


@bad("--style-blend all zero", "--style-blend needs at least one weight above 0")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--style-blend", "0"]


@bad("unknown --warm-start", "--warm-start must be one of previous, flow, none", "got 'optical'")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--warm-start", "optical"]


@bad("--device misspelt", "--device 'cuda:x' is not understood: use auto, cpu, cuda or cuda:N")
def _(d: Path):  # never reaches torch.device, which would raise its own error on a GPU machine
    return ["clip.mp4", "style.png", "-o", "out.gif", "--device", "cuda:x"]


@bad("--weights empty", "--weights is empty: use imagenet, random or the path")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--weights", ""]


@bad("input and style swapped", "style image clip.mp4 is a video: the input comes first, then "
     "the style (vstyle INPUT STYLE -o OUTPUT)")
def _(d: Path):
    return ["style.png", "clip.mp4", "-o", "out.png"]


@bad("input and style swapped, a GIF", "style image anim.gif is an animated GIF (3 frames): "
     "the input comes first, then the style (vstyle INPUT STYLE -o OUTPUT)")
def _(d: Path):
    conftest.write_gif(d / "anim.gif", frames(3), [100] * 3)
    return ["style.png", "anim.gif", "-o", "out.png"]


@bad("--style-blend one weight", "--style-blend has 1 weight for 2 style images")
def _(d: Path):
    shutil.copy(d / "style.png", d / "style2.png")
    return ["clip.mp4", "style.png", "style2.png", "-o", "out.gif", "--style-blend", "1"]


@bad("--style-blend count", "--style-blend has 3 weights for 2 style images",
     "give one weight per style")
def _(d: Path):
    shutil.copy(d / "style.png", d / "style2.png")
    return ["clip.mp4", "style.png", "style2.png", "-o", "out.gif", "--style-blend", "1,2,3"]


for flag, value, message in [
        ("--size", "-5", "--size must be at least 16 px for VGG19's four poolings (got -5)"),
        ("--size", "0", "--size must be at least 16 px for VGG19's four poolings (got 0)"),
        ("--size", "8", "--size must be at least 16 px for VGG19's four poolings (got 8)"),
        ("--iterations", "0", "--iterations must be at least 1 (got 0)"),
        ("--style-weight", "nan", "--style-weight must be a finite number >= 0 (got nan)"),
        ("--content-weight", "-1", "--content-weight must be a finite number >= 0 (got -1.0)"),
        ("--fps", "0", "--fps must be a number > 0 and at most 1000 (got 0.0)"),
        ("--fps", "1e9", "--fps must be a number > 0 and at most 1000 (got 1000000000.0)"),
        ("--size", "9000", "--size must be at most 8192 px (got 9000)"),
        ("--style-size", "100000", "--style-size must be at most 8192 px (got 100000)"),
        ("--style-scale", "1e6", "--style-scale 1e+06 makes the style image 32000000 px"),
        ("--scales", "20", "--scales can be at most 1 at --size 32 (got 20;"),
        ("--size", "20", "--size 20 makes the 64x48 frames 15 px on their short side; VGG19 "
                         "needs 16: use --size 21 or more"),
        ("--max-frames", "0", "--max-frames must be at least 1 (got 0)"),
        ("--seed", str(2 ** 64), f"--seed must be between 0 and 2**63 - 1 (got {2 ** 64})"),
        ("--style-weight", "1e39", "--style-weight must be at most 1e+30 (got 1e+39): the "
                                   "losses are float32 numbers"),
        ("--content-layers", "", "--content-layers need at least one layer each"),
        ("--temporal-frames", "1,0", "--temporal-frames must be frame gaps of 1 or more"),
        ("--temporal-frames", "1,two", "--temporal-frames '1,two' is not a comma-separated list")]:
    bad(f"{flag} {value}", message)(
        lambda d, flag=flag, value=value: ["clip.mp4", "style.png", "-o", "out.gif", flag, value])


@bad("a GIF frame longer than a GIF can hold", "a frame lasts 1000 s, longer than a GIF "
     "frame can (655.35 s): write .webp or .mp4")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--fps", "0.001"]


@bad("a trailing slash on a file's name", "-o out.gif/: the slash names a folder, the "
     "extension a file: drop one of them")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif/"]


@bad("--report naming a folder", "--report stats/ names a folder: give the file's name, e.g. "
     "stats/report.json")
def _(d: Path):
    return ["clip.mp4", "style.png", "-o", "out.gif", "--report", "stats/"]


def run_in_process(args, cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """The `vstyle` command as cli.main() runs it, in this process: the same parsing, messages
    and exit codes as run_cli, without starting Python and torch again (~2.5 s a run)."""
    import cli
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["vstyle", *map(str, args)])
    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # leave pytest's handlers
    monkeypatch.setattr(cli.warnings, "showwarning", cli.warnings.showwarning)  # restored after
    monkeypatch.setattr(cli, "BATCH", False)  # main() sets it for `vstyle batch`
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_main_in_process_gives_back_warnings_and_signals(monkeypatch, capsys):
    import signal
    import warnings
    import cli
    monkeypatch.setattr(sys, "argv", ["vstyle", "--version"])
    before = (warnings.showwarning, signal.getsignal(signal.SIGINT),
              signal.getsignal(signal.SIGTERM))
    with contextlib.suppress(SystemExit):
        cli.main()
    assert "vstyle" in capsys.readouterr().out
    assert (warnings.showwarning, signal.getsignal(signal.SIGINT),
            signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, clip, style, monkeypatch,
                                                   capsys):
    setup, phrases = BAD[case]
    args = setup(tmp_path)
    before = listing(tmp_path)
    # args win over FAST's
    line = error_line(run_in_process([*FAST, *args], tmp_path, monkeypatch, capsys))
    for phrase in phrases:
        assert phrase in line
    # No output, no `.out.gif.tmp-*` scratch file, no `.out.gif.vstyle-work` folder.
    assert listing(tmp_path) == before
    assert vstyle.errors.opt("size", 20) == "size=20"  # said --size 20, hands keywords back


@pytest.mark.parametrize("args, message", [
    (["clip.mp4"], "missing argument 'style"),  # typer 0.29: 'STYLE'; older: 'STYLE...'
    (["clip.mp4", "style.png", "--bogus"], "no such option: --bogus"),
    (["clip.mp4", "style.png", "--size", "big"], "invalid value for '--size'")])
def test_usage_errors_say_what_is_wrong(args, message, tmp_path):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr.lower(), result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    line = error_line(result)  # one line, as every other error
    assert result.stderr.strip() == line and line.endswith(" (see vstyle --help)")


def test_a_misspelt_option_is_not_matched_to_one_this_command_refuses(tmp_path):
    single = error_line(run_cli("clip.mp4", "style.png", "--worker", "2", cwd=tmp_path))
    assert "No such option: --worker" in single and "--workers" not in single
    batch = error_line(run_cli("batch", "clip.mp4", "style.png", "--reprot", "r.json",
                               cwd=tmp_path))
    assert "No such option: --reprot" in batch and "--report" not in batch
    assert batch.endswith("(see vstyle batch --help)")


def test_version_says_what_runs(tmp_path, monkeypatch, capsys):
    result = run_in_process(["--version"], tmp_path, monkeypatch, capsys)
    assert result.returncode == 0 and re.fullmatch(
        r"vstyle (\S+) \(torch \S+, torchvision \S+, \d+ CUDA GPUs?\)\n", result.stdout)
    # one version, not two (tomllib is Python 3.11+)
    pyproject = (conftest.ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.*)"$', pyproject, re.M)[1] == vstyle.__version__
    assert vstyle.__version__ in result.stdout


def test_help_shows_every_option_once_in_its_group(tmp_path):
    from dataclasses import fields
    result = ok(conftest.run_cli("--help", cwd=tmp_path, env={"COLUMNS": "200"}))
    group, groups = None, {}  # option -> the panel it is listed in
    for line in result.stdout.splitlines():
        if line.startswith("╭─"):
            group = line.strip("╭─╮ ").rstrip("─ ")
        elif found := re.match(r"│ (?:\*\s+)?(--[a-z-]+)", line):
            assert found[1] not in groups, f"{found[1]} listed twice"
            groups[found[1]] = group
    assert list(dict.fromkeys(groups.values())) == [
        "Options", "Look", "Iterations", "Video", "Hardware and model", "Resume"]
    # every option of the library's Options can be set from the command line
    missing = {f"--{f.name.replace('_', '-')}" for f in fields(Options)} - set(groups)
    assert not missing, missing
    assert (groups["--output"], groups["--style-weight"], groups["--tol"], groups["--loop"],
            groups["--device"], groups["--restart"]) == (
        "Options", "Look", "Iterations", "Video", "Hardware and model", "Resume")
    assert "--workers" not in groups  # batch's own: in its help, not this one
    batch = ok(conftest.run_cli("batch", "--help", cwd=tmp_path, env={"COLUMNS": "200"}))
    assert re.search(r"Usage: vstyle batch \[OPTIONS\]", batch.stdout), batch.stdout[:300]
    # without the options that batch refuses (each input resumes from its own work folder)
    listed = set(re.findall(r"│ (?:\*\s+)?(--[a-z-]+)", batch.stdout))
    assert {"--report", "--work-dir", "--keep-work", "--restart"}.isdisjoint(listed)
    assert {"--workers", "--chunk-frames", "--output", "--tol"} <= listed


def test_ctrl_c_before_the_frames_is_exit_130(clip, style, tmp_path, monkeypatch, capsys):
    # e.g. while a long video's frames are counted: typer turns it into a returned code
    import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(vstyle, "stylize", interrupted)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)  # leave pytest's handlers
    monkeypatch.setattr(cli.warnings, "showwarning", cli.warnings.showwarning)  # restored after
    monkeypatch.setattr(sys, "argv", ["vstyle", str(clip), str(style), "-o",
                                      str(tmp_path / "out.gif")])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 130 and "interrupted" in capsys.readouterr().err


def test_ctrl_c_while_torch_loads_is_one_word_not_a_traceback(clip, style, tmp_path):
    import signal
    import time
    proc = subprocess.Popen(
        [sys.executable, str(conftest.ROOT / "cli.py"), str(clip), str(style), "-o",
         str(tmp_path / "o" / "out.gif"), *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.5)  # Python runs cli.py; importing torch takes it ~2 s more
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err[-300:]
    assert not (tmp_path / "o").exists()


def test_an_error_with_the_progress_bar_on_is_one_line_alone(clip, style, tmp_path,
                                                             monkeypatch, capsys):
    # the bar is drawn from the first frame on: before it, nothing but the error line
    result = run_in_process([clip, style, "-o", "out.gif", "--size", "20"], tmp_path,
                            monkeypatch, capsys)
    assert result.returncode == 1 and result.stderr.startswith("error: --size 20 makes") and \
        result.stderr.count("\n") == 1, repr(result.stderr)


def test_a_run_started_with_ctrl_c_ignored_ignores_it(clip, style, tmp_path):
    # `vstyle ... &` in a script: the shell hands it SIGINT ignored, and it must stay so
    import signal
    import time
    proc = subprocess.Popen(
        [sys.executable, str(conftest.ROOT / "cli.py"), str(clip), str(style), "-o",
         str(tmp_path / "out.gif"), *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and (tmp_path / "out.gif").exists(), err[-300:]


def test_an_unwritable_report_folder_is_found_before_the_run(clip, style, tmp_path,
                                                              monkeypatch, capsys):
    (tmp_path / "locked").mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # the folder refuses new files (as root chmod can't)
        if Path(dir).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(media.tempfile, "mkstemp", mkstemp)
    result = run_in_process([clip, style, "-o", "out.gif", "--report", "locked/r.json", *FAST],
                            tmp_path, monkeypatch, capsys)
    line = error_line(result)
    assert result.returncode == 1 and line.startswith("error: cannot write to locked (") and \
        "Permission denied" in line and line.endswith("choose a writable folder for --report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "locked", "style.png"]


def test_weights_set_in_the_environment_are_named_so(tmp_path, clip, style):
    result = run_cli(clip, style, "-o", tmp_path / "out.gif", *FAST,
                     env={"VSTYLE_WEIGHTS": "bogus.pth"})
    assert result.returncode == 1 and error_line(result) == (
        "error: weights file bogus.pth (set by VSTYLE_WEIGHTS) not found: pass --weights "
        "imagenet, --weights random or the path of a VGG19 state dict (.pth)")
    assert not (tmp_path / "out.gif").exists()
    # a shell's stray space is not part of the value
    ok(run_cli(clip, style, "-o", tmp_path / "out.gif", *FAST, env={"VSTYLE_WEIGHTS": " random"}))
    (tmp_path / "junk.pth").write_text("not weights")
    junk = run_cli(clip, style, "-o", tmp_path / "out.gif", *FAST,
                   env={"VSTYLE_WEIGHTS": str(tmp_path / "junk.pth")})
    assert "junk.pth (set by VSTYLE_WEIGHTS) is no torch checkpoint" in error_line(junk)


def test_batch_warns_of_a_still_right_before_the_style_among_clips(clip, style, tmp_path):
    painting = tmp_path / "painting.png"
    shutil.copy(style, painting)
    result = run_cli("batch", clip, painting, style, "-o", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    assert f"warning: vstyle batch: {painting} is painted as an input, like the clips (the " \
        "last path alone is the style); to paint with it and" in " ".join(result.stderr.split())
    assert sorted(p.name for p in (tmp_path / "out").glob("*-style.*")) == [
        "clip-style.mp4", "painting-style.png"]


def test_batch_help_reads_inputs_first(tmp_path):
    usage = run_cli("batch", "--help").stdout
    assert "vstyle batch [OPTIONS] {INPUTS...} {STYLE}..." in usage.replace("\n", " ") or \
        "vstyle batch [OPTIONS] INPUTS... STYLE..." in usage, usage[:300]
    words = " ".join(usage.split())
    assert "The last path is the style" in words and "OUTDIR The folder the outputs go in" in words


def test_eta_counts_iterations_not_frames():
    from cli import Eta
    eta = Eta(Options())  # frame 1: up to 500 iterations; later ones guessed at 25 until seen
    eta.start(n_frames=3)
    assert eta.seconds_left() is None  # no iteration timed yet
    for i in range(1, 52):
        eta.step(1, i, 500, now=float(i))  # one second an iteration
    assert eta.seconds_left() == pytest.approx((500 - 51) + 2 * 25)
    eta.finished(1, 120)  # frame 1 stopped early
    for i in range(1, 41):  # warm frames cost 2 s an iteration: the estimate follows
        eta.step(2, i, 100, now=100.0 + 2 * i)  # frames switch: that gap is not an iteration's
    eta.finished(2, 40)
    assert eta.seconds_left() == pytest.approx(40 * 2, rel=0.02)
    eta.step(3, 5, 100, now=300.0)
    assert eta.seconds_left() == pytest.approx(35 * 2, rel=0.02)


def test_eta_knows_a_new_shot_is_painted_as_frame_one():
    from cli import Eta
    eta = Eta(Options())
    eta.start(n_frames=4)
    for i in range(1, 41):
        eta.step(2, i, 100, now=2.0 * i)  # a warm frame: 40 iterations, 2 s each
    eta.finished(2, 40)
    for i in range(1, 11):  # frame 3 is a new shot: its steps count up to 500
        eta.step(3, i, 500, now=200.0 + 2 * i)
    assert eta.seconds_left() == pytest.approx((490 + 40) * 2, rel=0.02)
    eta.finished(3, 300)  # its 300 iterations do not make the warm frames look longer
    eta.step(4, 1, 100, now=900.0)
    assert eta.seconds_left() == pytest.approx(39 * 2, rel=0.02)


def test_batch_progress_counts_frames_in_the_work_folders(tmp_path):
    import time
    from cli import BatchProgress
    from vstyle.batch import Job
    from vstyle.video import default_work_dir
    jobs = [Job(tmp_path / "a.mp4", tmp_path / "a-style.mp4", frame_range=(0, 10)),
            Job(tmp_path / "b.mp4", tmp_path / "b-style.mp4", frame_range=(0, 20)),
            Job(tmp_path / "c.mp4", tmp_path / "c-chunk", frame_range=(0, 8)),
            Job(tmp_path / "d.mp4", tmp_path / "d-style.mp4", manifest={"fps": 12})]
    jobs[3].source = type("Probed", (), {"n_frames": 6})()
    work = [default_work_dir(job.output) for job in jobs]

    def paint(folder, frames):
        folder.mkdir(exist_ok=True)
        for k in frames:
            (folder / f"{k:05d}.png").write_bytes(b"png")
    paint(work[0], range(1, 4))  # an earlier run's frames
    paint(jobs[2].output, range(1, 9))  # a chunk an earlier run finished
    paint(work[3], range(1, 6))  # an earlier run's, with other options: they will be cleared
    (work[3] / "manifest.json").write_text('{"fps": 10}')
    view = BatchProgress(quiet=True, options=Options(first_iterations=100, iterations=30))
    task = view.progress.tasks[0]
    with view:
        view.plan(jobs)
        assert (task.completed, task.total) == (3 + 8, 44)
        assert view.seconds_left() is None  # nothing painted by this run yet
        view.start_time = time.monotonic() - 60
        paint(work[0], [4, 5])
        paint(work[1], [1])
        (work[1] / ".00002.png.x1.tmp").write_bytes(b"half")  # being written: not a frame
        (work[1] / "manifest.json").write_text("{}")
        view.poll()
        assert (task.completed, task.total) == (14, 44)
        # frame 1 counts 100 iterations, the others 25: 150 done in this run in 60 s, 825 left
        assert view.seconds_left() == pytest.approx(825 / 150 * 60, rel=0.01)
        view.done(jobs[2], "done", 8, "")  # the reused chunk ends at once: no change
        assert view.seconds_left() == pytest.approx(825 / 150 * 60, rel=0.01)
        view.done(jobs[1], "failed", 0, "broken")  # its unpainted frames leave the total
        assert (task.completed, task.total) == (14, 25)
        shutil.rmtree(work[0])  # a job that has just finished, its end not yet reported
        view.poll()
        assert task.completed == 14
        view.done(jobs[0], "done", 10, "")
        (work[3] / "manifest.json").write_text('{"fps": 12}')  # the job has started afresh
        for f in work[3].glob("*.png"):
            f.unlink()
        paint(work[3], [1, 2])
        view.poll()
        assert (task.completed, task.total) == (21, 25)
        assert task.fields["jobs"] == "3/4"


def test_batch_refuses_a_file_name_for_its_folder(clip, style, tmp_path):
    result = run_cli("batch", clip, style, "-o", "out.gif", *FAST, cwd=tmp_path)
    assert "vstyle batch -o out.gif: -o is the folder the outputs go in" in error_line(result)
    assert not (tmp_path / "out.gif").exists()


def test_batch_refuses_options_of_a_single_run(clip, style, tmp_path):
    # the refusal names the options given, not every one it would refuse
    line = error_line(run_cli("batch", clip, style, "-o", tmp_path / "out", "--restart"))
    assert line == "error: --restart is for one input; to paint an output again, delete it " \
        "and run the batch again"
    line = error_line(run_cli("batch", clip, style, "-o", tmp_path / "out", "--keep-work",
                              "--report", tmp_path / "r.json", "--work-dir", tmp_path / "w"))
    assert line == "error: --report, --work-dir and --keep-work are for one input; for one " \
        "input's figures, run vstyle INPUT STYLE -o OUTPUT --report PATH; vstyle batch keeps " \
        "each output's work folder beside it in OUTDIR"
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()


def test_one_input_refuses_options_of_a_batch(clip, style, tmp_path):
    result = run_cli(clip, style, "-o", tmp_path / "out.gif", "--workers", 0)
    assert result.returncode == 1
    assert error_line(result).startswith("error: --workers is for `vstyle batch INPUTS...")
    assert not (tmp_path / "out.gif").exists()


# --- odd but valid inputs ------------------------------------------------------------------------

def style_images(d: Path) -> list[Path]:
    """One painting in each form people have: grey, RGBA, paletted, 16-bit grey and colour, huge."""
    rng = np.random.default_rng(5)
    rgb = np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    images = {
        "grey.png": Image.fromarray(rgb).convert("L"),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "grey16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        # 4000x3000: must be shrunk to the style size first, not run through VGG19 as it is.
        "huge.png": Image.fromarray(rgb).resize((4000, 3000), Image.Resampling.NEAREST),
    }
    paths = []
    for name, image in images.items():
        image.save(d / name)
        paths.append(d / name)
    rgb16 = d / "rgb16.png"  # 48-bit colour: Pillow cannot write it, OpenCV can (BGR order)
    cv2.imwrite(str(rgb16), rgb[..., ::-1].astype(np.uint16) * 257)
    assert open(rgb16, "rb").read()[24] == 16  # the PNG header's bit depth
    assert {p.name: Image.open(p).mode for p in paths} == {
        "grey.png": "L", "rgba.png": "RGBA", "palette.png": "P", "grey16.png": "I;16",
        "huge.png": "RGB"}
    return [*paths, rgb16]


def test_style_images_of_every_mode_and_size_work(tmp_path, clip):
    styles = style_images(tmp_path)
    result = ok(run_cli(clip, *styles, "-o", tmp_path / "out.gif", "--max-frames", "2", *FAST,
                        timeout=120))  # a 4000x3000 style through VGG19 would take minutes
    assert media.gif_info(tmp_path / "out.gif")[0] == 2
    assert RANDOM_WEIGHTS_WARNING in result.stderr  # --quiet keeps warnings


def test_folder_of_mixed_sizes_follows_the_first_image(tmp_path, style):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i, (w, h) in enumerate([(64, 48), (80, 60), (40, 64)], start=1):
        iio.imwrite(shots / f"shot{i}.png", frames(1, w, h)[0])
    (shots / "notes.txt").write_text("ignored\n")
    ok(run_cli(shots, style, "-o", tmp_path / "out", *FAST))
    out = media.written_frames(tmp_path / "out")
    assert [p.name for p in out] == ["00001.png", "00002.png", "00003.png"]
    assert {iio.imread(p).shape for p in out} == {(24, 32, 3)}  # 64x48 at --size 32


def test_missing_output_folders_are_created_and_max_frames_cuts(tmp_path, clip, style):
    out, report = tmp_path / "new" / "deeper" / "out.mp4", tmp_path / "logs" / "r.json"
    ok(run_cli(clip, style, "-o", out, "--max-frames", "3", "--report", report,
               "--work-dir", tmp_path / "work", *FAST))
    assert mp4_frames(out) == 3
    assert listing(out.parent) == ["out.mp4"]  # no scratch files
    assert json.loads(report.read_text())["frames"] == 3
    assert listing(tmp_path) == ["clip.mp4", "logs", "logs/r.json", "new", "new/deeper",
                                 "new/deeper/out.mp4", "style.png"]  # the work folder is gone


# --- the CLI contract ----------------------------------------------------------------------------

def test_still_image_to_png(tmp_path, style):
    iio.imwrite(tmp_path / "photo.png", frames(1)[0])
    ok(run_cli("photo.png", "style.png", "-o", "out.png", *FAST, cwd=tmp_path))
    assert iio.imread(tmp_path / "out.png").shape == (24, 32, 3)
    assert listing(tmp_path) == ["out.png", "photo.png", "style.png"]


def test_gif_keeps_count_and_timing_and_says_what_it_wrote(tmp_path, clip, style):
    not_quiet = [flag for flag in FAST if flag != "--quiet"]
    result = ok(run_cli("clip.mp4", "style.png", "-o", "out.gif", *not_quiet, cwd=tmp_path))
    n, durations, loop, _ = media.gif_info(tmp_path / "out.gif")
    assert n == 8 and loop == 0
    assert sum(durations) == pytest.approx(8 / 12 * 1000, abs=10)  # 12 fps, to the centisecond
    assert iio.imread(tmp_path / "out.gif", index=0).shape[:2] == (24, 32)
    assert result.stdout == ""
    wrote = [line for line in result.stderr.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 1 and wrote[0].startswith("wrote out.gif: 8 frames, ")
    # one unwrapped line, with the consistency the run measured as it went
    assert re.search(r"s/frame\); warping error [0-9.]+ \(input's own [0-9.]+, ratio [0-9.]+\)$",
                     wrote[0]), wrote[0]
    assert listing(tmp_path) == ["clip.mp4", "out.gif", "style.png"]


def test_the_closing_line_counts_the_shots(tmp_path, style, monkeypatch, capsys):
    # a cut to a flat red wall, then to a flat green one: each starts a new painting
    a, b = frames(2)
    folder = tmp_path / "cuts"
    folder.mkdir()
    for i, image in enumerate([a, b, np.full_like(a, (200, 30, 30)), np.full_like(a, (30, 200, 30))]):
        iio.imwrite(folder / f"{i}.png", image)
    not_quiet = [flag for flag in FAST if flag != "--quiet"]
    result = run_in_process(["cuts", "style.png", "-o", "out.gif", *not_quiet], tmp_path,
                            monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    assert "wrote out.gif: 4 frames in 3 shots, " in result.stderr


def test_default_output_is_beside_the_input_and_quiet_is_quiet(tmp_path, clip, style):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = ok(run_cli(clip, style, *FAST, cwd=elsewhere))  # FAST has --quiet
    out = tmp_path / "clip-style.mp4"
    assert mp4_frames(out) == 8 and iio.immeta(out)["fps"] == pytest.approx(12)
    assert listing(elsewhere) == []
    assert listing(tmp_path) == ["clip-style.mp4", "clip.mp4", "elsewhere", "style.png"]
    # Quiet: no progress bar, no summary; warnings still show, one line each.
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(RANDOM_WEIGHTS_WARNING), result.stderr
    assert lines[0].endswith("(use --weights imagenet for real results)")
