"""vstyle: turn a video, a GIF or a folder of images into an animated painting.

Pipeline (one module each): media (decode) -> vgg + losses (features and loss terms) ->
optimize (one frame) -> flow (temporal warm start) -> video (the frame loop) -> media (encode).
"""

from .errors import VStyleError, VStyleWarning
from .optimize import FrameStats
from .options import Options
from .video import Event, Interrupted, RunResult, stylize, stylize_image
from . import batch  # vstyle.batch.run_batch: many inputs, resumable, on several GPUs

__all__ = ["Options", "VStyleError", "VStyleWarning", "Event", "FrameStats", "Interrupted",
           "RunResult", "stylize", "stylize_image"]
__version__ = "0.1.0"
