"""torchvision's VGG19: loading its weights, and a truncated, named feature extractor."""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

from .errors import VStyleError, opt, plural, warn

# torchvision's ImageNet normalization: its VGG19 expects RGB in [0, 1] normalized this way.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
CONVS_PER_BLOCK = (2, 2, 4, 4, 4)  # VGG19's five blocks, each ending in a 2x2 pooling


def layer_names() -> list[str]:
    """Names of vgg19().features, index by index: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names = []
    for block, n_convs in enumerate(CONVS_PER_BLOCK, start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def block_of(layer: str) -> int:
    """The block a layer of layer_names() sits in: conv3_1, relu3_1, pool3 -> 3."""
    return int(layer[4])


def checkpoint_path() -> Path:
    """Where torchvision caches the ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_features(weights: str, seed: int = 0) -> nn.Sequential:
    """vgg19().features with weights from 'imagenet' (torchvision's cache), 'random' or a file."""
    if weights == "random":
        warn("random VGG19 weights: the mechanics run, but the result will not look "
             f"like the style (use {opt('weights', 'imagenet')} for real results)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return vgg19_features(init=True)
    if weights == "imagenet":
        return _imagenet_features()
    return _file_features(Path(weights))


def _imagenet_features() -> nn.Sequential:
    from torchvision import models  # here, not at the top: importing it takes ~2 s
    cached = checkpoint_path()
    had_file = cached.exists()
    try:
        # torch says "Downloading: ..." on stdout: to stderr, with our other news, so that
        # stdout stays the caller's
        with contextlib.redirect_stdout(sys.stderr):
            model = models.vgg19(weights=models.VGG19_Weights.IMAGENET1K_V1, progress=False)
    except Exception as e:  # URLError, HTTPError, a half-downloaded or corrupt file...
        if isinstance(e, MemoryError) or "can't allocate memory" in str(e):
            raise  # the run's own out-of-memory message says what to do
        if had_file and _unreadable(e):  # torch found its copy and could not read it
            raise VStyleError(
                f"the cached ImageNet weights {cached} are damaged (an interrupted download "
                f"or copy?): delete {'that folder' if cached.is_dir() else 'the file'} and run "
                "again to download them anew (~550 MB), or put a good copy there") from None
        reason = str(e).split(". ")[0].splitlines()[0][:120] if str(e) else type(e).__name__
        raise VStyleError(
            f"could not {'read' if had_file else 'download'} VGG19's ImageNet weights "
            f"({reason}): download {WEIGHTS_FILE} "
            f"(~550 MB) into {cached.parent}/ or pass {opt('weights', 'FILE', placeholder=True)} "
            f"({opt('weights', 'random')} runs the pipeline without them, for a try)") from None
    return model.features


def _unreadable(error: Exception) -> bool:
    """Whether torch.load failed on the file's bytes (cut short, not a checkpoint) rather than
    for another reason (permissions, memory)."""
    # (a text file gives KeyError: its first byte read as an unknown pickle opcode)
    return isinstance(error, (pickle.UnpicklingError, EOFError, IsADirectoryError, ValueError,
                              KeyError)) \
        or "PytorchStreamReader" in str(error)


def _file_features(path: Path) -> nn.Sequential:
    # each message names the file, and where it was set when no flag named it
    from_env = os.environ.get("VSTYLE_WEIGHTS", "").strip() == str(path)
    name = f"weights file {path}{' (set by VSTYLE_WEIGHTS)' if from_env else ''}"
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "not found"
        raise VStyleError(f"{name} {where}: pass {opt('weights', 'imagenet')}, "
                          f"{opt('weights', 'random')} or the path of a VGG19 state dict (.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # a whole pickled model needs its classes unpickled, which weights_only refuses
        whole = "Unsupported global" in str(e)
        fix = ("it holds a whole model: save its weights with torch.save(model.state_dict(), "
               "path)" if whole else "pass a VGG19 state dict saved with torch.save")
        what = "is no torch checkpoint, or is cut short" if _unreadable(e) and not whole else \
            "cannot be read"
        raise VStyleError(f"{name} {what} ({type(e).__name__}): {fix}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VStyleError(f"{name} holds no state dict: save one with "
                          "torch.save(model.state_dict(), path)")
    # Accept torchvision's whole vgg19 ("features.0.weight", "classifier...") or features only.
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    features = vgg19_features(init=False)
    expected = features.state_dict()
    missing = sorted(set(expected) - set(state), key=_key_order)
    if missing:
        raise VStyleError(f"{name} is not a VGG19 state dict (missing {missing[0]}"
                          f"{' and more' if len(missing) > 1 else ''}): pass torchvision's "
                          f"{WEIGHTS_FILE} or {opt('weights', 'imagenet')}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise VStyleError(f"{name} has the wrong shape for {key} "
                              f"({tuple(state[key].shape)}, VGG19 needs {tuple(tensor.shape)}): "
                              f"pass torchvision's {WEIGHTS_FILE}")
    features.load_state_dict({k: state[k] for k in expected})
    return features


def vgg19_features(init: bool) -> nn.Sequential:
    """The layers of torchvision's vgg19().features, same indices and shapes, without building
    (and randomly initializing) its 120M-parameter classifier that we never use."""
    layers: list[nn.Module] = []
    channels = 3
    for block, n_convs in enumerate(CONVS_PER_BLOCK):
        width = 64 << min(block, 3)
        for _ in range(n_convs):
            conv = nn.Conv2d(channels, width, 3, padding=1)
            if init:  # torchvision's initialization for VGG convolutions
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def _key_order(key: str) -> tuple[int, str]:
    index, _, rest = key.partition(".")
    return (int(index) if index.isdigit() else 0, rest)


class VGGFeatures(nn.Module):
    """Frozen VGG19 truncated after the deepest layer in use; returns the named activations.

    Layer names are conv names ("conv4_2") and mean that convolution's activation *after*
    its ReLU, as in Gatys et al. and neural-style: rectified responses are the features the
    network passes on, and Grams of pre-ReLU responses let positive and negative ones cancel.
    """

    def __init__(self, features: nn.Sequential, layers: list[str], pooling: str = "max"):
        super().__init__()
        names = layer_names()
        for layer in layers:
            if not layer.startswith("conv") or layer not in names:
                convs = ", ".join(n for n in names if n.startswith("conv"))
                raise VStyleError(f"unknown VGG19 layer {layer!r}: use one of {convs}")
        relus = {names.index(layer.replace("conv", "relu")): layer for layer in layers}
        last = max(relus)
        modules = list(features.children())[: last + 1]  # never run layers nobody reads
        for i, m in enumerate(modules):
            if isinstance(m, nn.MaxPool2d) and pooling == "avg":
                modules[i] = nn.AvgPool2d(2, 2)
        self.net = nn.Sequential(*modules).eval().requires_grad_(False)
        self.outputs = relus  # module index -> layer name
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image: (B, 3, H, W) RGB in [0, 1] -> {layer name: (B, C, h, w)}."""
        x = (image - self.mean) / self.std
        feats = {}
        for i, module in enumerate(self.net):
            x = module(x)
            if i in self.outputs:
                feats[self.outputs[i]] = x
        return feats


def resolve_device(name: str) -> torch.device:
    """'auto' picks the GPU when there is one; asking for a missing GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VStyleError(f"{opt('device', name)} asked for, but no CUDA GPU is visible: "
                              f"use {opt('device', 'cpu')} (or {opt('device', 'auto')})")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VStyleError(f"{opt('device', name)}: there are only "
                              f"{plural(torch.cuda.device_count(), 'GPU')}; use cuda:0 … or auto")
        return device
    raise VStyleError(f"{opt('device', name)} not understood: use auto, cpu, cuda or cuda:N")
