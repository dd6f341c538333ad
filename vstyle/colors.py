"""Keeping the content's colours (Gatys et al. 2016, "Preserving color in neural artistic style transfer")."""

from __future__ import annotations

import cv2
import numpy as np


def keep_chroma(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance-only transfer: the result's brightness with the content frame's chroma.

    The chroma then changes from frame to frame exactly as the source's does, so it adds no
    flicker of its own.
    """
    y = cv2.cvtColor(result, cv2.COLOR_RGB2YCrCb)[..., :1]
    crcb = cv2.cvtColor(content, cv2.COLOR_RGB2YCrCb)[..., 1:]
    return cv2.cvtColor(np.concatenate([y, crcb], axis=2), cv2.COLOR_YCrCb2RGB)


def match_colors(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Recolour the style image so its RGB mean and covariance equal the content's."""
    s = style.reshape(-1, 3).astype(np.float64) / 255
    c = content.reshape(-1, 3).astype(np.float64) / 255
    mu_s, mu_c = s.mean(0), c.mean(0)
    cov_s = np.cov(s, rowvar=False) + 1e-5 * np.eye(3)
    cov_c = np.cov(c, rowvar=False) + 1e-5 * np.eye(3)
    transform = _sqrtm(cov_c) @ np.linalg.inv(_sqrtm(cov_s))
    out = (s - mu_s) @ transform.T + mu_c
    return (out.reshape(style.shape).clip(0, 1) * 255).round().astype(np.uint8)


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix."""
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(np.sqrt(np.maximum(values, 0))) @ vectors.T
