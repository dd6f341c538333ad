"""The loss terms, as pure functions of tensors. Shapes: features (B, N, H, W), images (B, 3, H, W)."""

from __future__ import annotations

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix divided by M = H*W: (B, N, H, W) -> (B, N, N).

    Dividing by M lets a style image of another size give a comparable target; with both
    Grams divided by M, `style_layer_loss` equals Gatys' sum (G - A)^2 / (4 N^2 M^2).
    Computed in fp32 even under autocast: the products of many activations overflow fp16.
    """
    b, n, h, w = features.shape
    f = features.reshape(b, n, h * w).float()
    return f @ f.transpose(1, 2) / (h * w)


def region_gram(features: torch.Tensor, mask: torch.Tensor,
                at: torch.Tensor | None = None) -> torch.Tensor:
    """The Gram of one region: sum_i m_i f_i f_i^T / sum_i m_i, mask (B, 1, H0, W0) in [0, 1]
    averaged down to the layer's size unless it has it already (the guided Gram of Gatys et
    al. 2017, spatial control). `at`: the flat positions where the mask is not 0, if known
    (the same Gram from those columns alone: a thin new strip costs a twentieth)."""
    b, n, h, w = features.shape
    if mask.shape[-2:] != (h, w):
        mask = torch.nn.functional.interpolate(mask, size=(h, w), mode="area")
    m, f = mask.reshape(b, 1, h * w), features.reshape(b, n, h * w)
    if at is not None:
        m, f = m.index_select(2, at), f.index_select(2, at)
    f = f.float()
    return (f * m) @ f.transpose(1, 2) / m.sum(dim=2, keepdim=True).clamp_min(1e-6)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor,
                     mask: torch.Tensor | None = None, at: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Gatys et al.'s E_l = 1/(4 N^2 M^2) * sum_ij (G_ij - A_ij)^2, one value per batch item;
    with a mask, the same for the region it covers (see region_gram for `at`)."""
    n = features.shape[1]
    g = gram(features) if mask is None else region_gram(features, mask, at)
    return (g - target_gram).pow(2).sum(dim=(1, 2)) / (4 * n * n)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared feature error (Gatys use half the sum; the mean does not grow with size)."""
    return (features.float() - target.float()).pow(2).mean(dim=(1, 2, 3))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Squared total variation, mean over pixels: discourages pixel-level noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean(dim=(1, 2, 3)) + dy.pow(2).mean(dim=(1, 2, 3))


def temporal_loss(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s temporal term: squared difference to the warped previous result on
    reliable pixels (mask (B, 1, H, W) in {0, 1}), mean over all pixels."""
    return (mask * (image - warped).pow(2)).mean(dim=(1, 2, 3))
