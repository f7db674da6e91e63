"""Data augmentation for image batches, drawn from torch's global generator (so resumes repeat it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_shift(x: Tensor, max_shift: int) -> Tensor:
    """Translate each image of [B, C, H, W] by up to `max_shift` pixels in each direction (zero fill);
    frames [B, T, C, H, W] move together, by one shift per sample."""
    if x.dim() == 5:
        return random_shift(x.flatten(1, 2), max_shift).view_as(x)
    if x.dim() != 4 or max_shift <= 0:
        return x
    b, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * s + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chans = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]
