"""Person-centric visual features: crops of the clip at each detection's box, encoded by a small
convolutional network over RGB and frame differences.

    crop_d   = the clip cut at box_d (plus a margin) and resized to (h, w)     [T, 3, h, w]
    input_d  = [crop_d, crop_d(t+1) - crop_d(t)]                               [T, 6, h, w]
    f_d      = Conv2d stack per frame -> 4x2 grid of cells -> linear          [T, C]
               (the grid keeps where a colour is: hat, top, trousers)
    a_d      = GELU(Conv1d over time)(f_d) -> [mean over T, max over T]       [2C]
    out_d    = LayerNorm(Linear(a_d))                                         [out_dim]

The final LayerNorm keeps the vector at unit scale: it is added to other per-person features
(box and category, trajectories), and at the small scale of a fresh linear layer it was drowned
by them and the actions of the person were not learned in a CPU run's few hundred steps.

Only the detections that are kept (real, and persons when so configured) are cropped and
encoded, so the cost follows the number of people, not the padded detection count.

The crops use `affine_grid` + `grid_sample` rather than `torchvision.ops.roi_align`: torchvision
does not import beside the pinned CPU torch (see `ravar.util.box_ops`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def crop_boxes(
    frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], margin: float = 0.0
) -> torch.Tensor:
    """Crop normalised xyxy `boxes` [N, 4] out of every frame of `frames` [N, T, 3, H, W] and
    resize them to `size` (h, w): `[N, T, 3, h, w]` (bilinear, zeros outside the image)."""
    n, t = frames.shape[:2]
    x1, y1, x2, y2 = boxes.to(frames.dtype).unbind(-1)  # [N] each
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    x1, x2, y1, y2 = x1 - mw, x2 + mw, y1 - mh, y2 + mh
    # affine map from the output grid [-1, 1] to the box in input coordinates [-1, 1]
    theta = torch.zeros(n, 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = x2 - x1
    theta[:, 0, 2] = x1 + x2 - 1
    theta[:, 1, 1] = y2 - y1
    theta[:, 1, 2] = y1 + y2 - 1
    theta = theta.repeat_interleave(t, dim=0)  # [N*T, 2, 3]
    flat = frames.flatten(0, 1)  # [N*T, 3, H, W]
    grid = F.affine_grid(theta, [n * t, 3, *size], align_corners=False)
    crops = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.view(n, t, 3, *size)


class AppearanceEncoder(nn.Module):
    """Crops `[N, T, 3, h, w]` -> appearance-and-motion vectors `[N, out_dim]`."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        w = width
        self.frame_net = nn.Sequential(
            nn.Conv2d(6, w // 4, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(w // 4, w // 2, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(w // 2, w, 3, padding=1), nn.GELU(),
        )  # fmt: skip
        self.grid = nn.AdaptiveAvgPool2d((4, 2))
        self.cells = nn.Linear(8 * w, w)
        self.time_conv = nn.Conv1d(w, w, kernel_size=3, padding=1)
        self.out = nn.Sequential(nn.Linear(2 * w, out_dim), nn.LayerNorm(out_dim))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        n, t = crops.shape[:2]
        diff = torch.cat([crops[:, 1:] - crops[:, :-1], torch.zeros_like(crops[:, :1])], dim=1)
        x = torch.cat([crops, diff], dim=2).flatten(0, 1)  # [N*T, 6, h, w]
        f = self.grid(self.frame_net(x)).flatten(1)  # [N*T, C*8]
        f = self.cells(f).view(n, t, -1)  # [N, T, C]
        f = F.gelu(self.time_conv(f.transpose(1, 2)))  # [N, C, T]
        return self.out(torch.cat([f.mean(-1), f.amax(-1)], dim=-1))  # [N, out_dim]


class DetectionAppearance(nn.Module):
    """Appearance vectors of the kept detections of a clip: `[B, D, out_dim]`, zero elsewhere."""

    def __init__(self, size: tuple[int, int], margin: float, width: int, out_dim: int) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.margin = margin
        self.out_dim = out_dim
        self.encoder = AppearanceEncoder(width, out_dim)

    def forward(
        self, frames: torch.Tensor, det_boxes: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """frames [B, T, 3, H, W], det_boxes [B, D, 4] normalised xyxy, keep [B, D] bool."""
        b, d = keep.shape
        out = frames.new_zeros(b, d, self.out_dim)  # [B, D, out_dim]
        rows, cols = keep.nonzero(as_tuple=True)  # [N], [N]
        if rows.numel() == 0:
            return out
        crops = crop_boxes(frames[rows], det_boxes[rows, cols], self.size, self.margin)
        feats = self.encoder(crops)  # [N, out_dim]
        return out.index_put((rows, cols), feats.to(out.dtype))
