"""Visual backbones: a clip of frames `[B, T, 3, H, W]` -> spatial tokens per frame `[B, T, Q, C]`.

Two kinds:
- "scratch": a small factorised video transformer (attention within each frame, then attention or
  a depthwise convolution across frames at each grid position), trained from random weights.
- "hf": a Hugging Face vision model (ViT, CLIP vision, or BLIP-2 vision + Q-Former as in the
  RefAtomNet papers), from a local folder or the local cache (never downloaded), or built from a
  config dict with random weights. Frames are folded into the batch `[B*T, 3, H, W]`, encoded one
  by one, and unfolded back to `[B, T, Q, C]`.

`VisualConfig.frozen` says what is frozen: "all" (the whole backbone), "vision" (BLIP-2 only: the
vision transformer, while the Q-Former and its query tokens train, as RefAtomNet did) or "none"
(true / false are read as "all" / "none"). A frozen part runs under `torch.no_grad()` and stays in
eval mode whatever `.train()` its parent calls (`FrozenPartMixin`, the one freezing mechanism);
`frozen_part` names that part.

Pretrained weights: `hf_name_or_path` names a local folder (or a name in the local HF cache) whose
own config gives the architecture; `hf_config` builds random weights from a config dict instead.
A config holds one of the two; when a run config sets `hf_name_or_path`, an inherited `hf_config`
is dropped (see `ravar.engine.config.resolve_run_config`).
"""

from __future__ import annotations

import copy
import json
import math
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ravar.config import ConfigError
from ravar.errors import BatchError
from ravar.models.backbones.frozen import FrozenPartMixin
from ravar.models.backbones.shipped import shipped
from ravar.models.layers import FeedForward, MultiHeadAttention, resize_pos_embed
from ravar.util.hf_quiet import quiet_transformers

FROZEN_CHOICES = ("all", "vision", "none")


@dataclass
class VisualConfig:
    """Which visual backbone, and its sizes."""

    kind: Literal["scratch", "hf"] = "scratch"
    dim: int = 128  # scratch: token width C (hf: C is the model's own width)
    patch: int = 8  # scratch: patch size in pixels
    depth: int = 2  # scratch: number of factorised space-time blocks
    heads: int = 4  # scratch: attention heads
    tokens_per_frame: int | None = None  # Q: pool the patch grid to sqrt(Q) x sqrt(Q); None: keep
    image_size: tuple[int, int] = (64, 64)  # scratch: (H, W) the position embeddings are made for
    num_frames: int = 8  # scratch: T the temporal position embeddings are made for
    temporal: Literal["attention", "conv", "none"] = "attention"  # scratch: mixing across frames
    mlp_ratio: float = 2.0  # scratch
    dropout: float = 0.0  # scratch
    hf_name_or_path: str | None = None  # hf: local folder or a name already in the local HF cache
    hf_kind: Literal["vit", "clip", "blip2"] = "vit"
    hf_config: dict[str, Any] | None = None  # hf: random weights from a config (tiny_hf_config)
    # what is frozen: "all", "vision" (BLIP-2: the ViT only; the Q-Former trains) or "none";
    # true / false (older configs and checkpoints) mean "all" / "none"
    frozen: bool | Literal["all", "vision", "none"] = "none"

    def __post_init__(self) -> None:
        if isinstance(self.frozen, bool):
            self.frozen = "all" if self.frozen else "none"
        if self.frozen not in FROZEN_CHOICES:
            raise ConfigError(
                f"VisualConfig.frozen must be one of {list(FROZEN_CHOICES)} (or true / false), "
                f"got {self.frozen!r}"
            )
        if self.frozen == "vision" and not (self.kind == "hf" and self.hf_kind == "blip2"):
            raise ConfigError(
                "VisualConfig.frozen='vision' freezes the vision transformer of a BLIP-2 and "
                f"trains its Q-Former; kind={self.kind!r}, hf_kind={self.hf_kind!r} has no "
                "Q-Former: use 'all' or 'none'"
            )
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        q = self.tokens_per_frame
        if q is not None and (q < 1 or math.isqrt(q) ** 2 != q):
            raise ConfigError(
                f"VisualConfig.tokens_per_frame must be a square number (a grid of s x s tokens) "
                f"or None, got {self.tokens_per_frame}"
            )
        if self.kind == "scratch":
            if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
                raise ConfigError(
                    f"VisualConfig.dim ({self.dim}) must be a positive multiple of "
                    f"VisualConfig.heads ({self.heads})"
                )
            if self.patch < 1 or self.depth < 0 or self.num_frames < 1:
                raise ConfigError(
                    "VisualConfig: patch and num_frames must be >= 1 and depth >= 0, got "
                    f"patch={self.patch}, num_frames={self.num_frames}, depth={self.depth}"
                )
            if min(self.image_size) < self.patch:
                raise ConfigError(
                    f"VisualConfig.image_size {self.image_size} is smaller than one patch "
                    f"({self.patch})"
                )
        elif (self.hf_name_or_path is None) == (self.hf_config is None):
            raise ConfigError(
                "VisualConfig with kind='hf' needs exactly one of hf_name_or_path (pretrained "
                "weights) or hf_config (random weights)"
            )


class VisualBackbone(FrozenPartMixin):
    """Base of the visual backbones: `forward(frames [B, T, 3, H, W]) -> tokens [B, T, Q, C]`.

    Attributes: `dim` (C), `tokens_per_frame` (Q, for frames of the configured size),
    `frozen_part` (the submodule kept frozen, or None when nothing is frozen).
    """

    dim: int
    tokens_per_frame: int

    def __init__(self, config: VisualConfig) -> None:
        super().__init__()
        self.config = config

    @staticmethod
    def _check_frames(frames: torch.Tensor) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise BatchError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")


def _pool_grid(x: torch.Tensor, grid: tuple[int, int], side: int) -> torch.Tensor:
    """Average-pool tokens `[N, h*w, C]` laid out on an `h x w` grid to `[N, side*side, C]`."""
    n, _, c = x.shape
    g = x.transpose(1, 2).reshape(n, c, grid[0], grid[1])  # [N, C, h, w]
    g = F.adaptive_avg_pool2d(g, side)  # [N, C, s, s]
    return g.flatten(2).transpose(1, 2)  # [N, s*s, C]


# ---------------------------------------------------------------------------------------------
# scratch


class FactorisedBlock(nn.Module):
    """One space-time block on `[B, T, N, C]`: attention among the N tokens of each frame, then
    mixing of the T frames at each position (attention, depthwise conv or nothing), then an MLP;
    pre-norm residuals."""

    def __init__(
        self, dim: int, heads: int, temporal: str, mlp_ratio: float = 2.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.temporal = temporal
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = MultiHeadAttention(dim, heads, attn_dropout=dropout)
        if temporal == "attention":
            self.norm_time = nn.LayerNorm(dim)
            self.attn_time = MultiHeadAttention(dim, heads, attn_dropout=dropout)
        elif temporal == "conv":
            self.norm_time = nn.LayerNorm(dim)
            self.conv_time = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim)
        hidden = int(dim * mlp_ratio)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, hidden, dim, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, c = x.shape  # [B, T, N, C]
        s = x.reshape(b * t, n, c)  # [B*T, N, C]: one sequence per frame
        s = s + self.attn_space(self.norm_space(s))
        x = s.view(b, t, n, c)
        if self.temporal == "attention":
            u = x.transpose(1, 2).reshape(b * n, t, c)  # [B*N, T, C]: one sequence per position
            u = u + self.attn_time(self.norm_time(u))
            x = u.view(b, n, t, c).transpose(1, 2)  # [B, T, N, C]
        elif self.temporal == "conv":
            u = self.norm_time(x).permute(0, 2, 3, 1).reshape(b * n, c, t)  # [B*N, C, T]
            u = self.conv_time(u).view(b, n, c, t).permute(0, 3, 1, 2)  # [B, T, N, C]
            x = x + u
        return x + self.mlp(self.norm_mlp(x))  # [B, T, N, C]


class ScratchVisualBackbone(VisualBackbone):
    """Patch embedding (Conv2d, stride = patch) per frame + learned spatial and temporal position
    embeddings (interpolated for other sizes) + `depth` factorised space-time blocks, optionally
    pooled to `tokens_per_frame` tokens."""

    def __init__(self, config: VisualConfig) -> None:
        super().__init__(config)
        c = config.dim
        self.dim = c
        self.patch_embed = nn.Conv2d(3, c, kernel_size=config.patch, stride=config.patch)
        self.grid = (config.image_size[0] // config.patch, config.image_size[1] // config.patch)
        self.pos_space = nn.Parameter(torch.zeros(1, 1, self.grid[0] * self.grid[1], c))
        self.pos_time = nn.Parameter(torch.zeros(1, config.num_frames, 1, c))
        nn.init.trunc_normal_(self.pos_space, std=0.02)
        nn.init.trunc_normal_(self.pos_time, std=0.02)
        self.blocks = nn.ModuleList(
            FactorisedBlock(c, config.heads, config.temporal, config.mlp_ratio, config.dropout)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(c)
        q = config.tokens_per_frame
        self.pool_side = math.isqrt(q) if q is not None else None
        self.tokens_per_frame = q if q is not None else self.grid[0] * self.grid[1]
        if config.frozen == "all":
            self._freeze(self)

    def _space_pos(self, h: int, w: int) -> torch.Tensor:
        pos = resize_pos_embed(self.pos_space[0, 0], (h, w), self.grid, "bicubic")  # [h*w, C]
        return pos[None, None]  # [1, 1, h*w, C]

    def _time_pos(self, t: int) -> torch.Tensor:
        return resize_pos_embed(self.pos_time[0, :, 0], t)[None, :, None]  # [1, T, 1, C]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        with self._grad_context():
            b, t = frames.shape[:2]
            x = self.patch_embed(frames.flatten(0, 1))  # [B*T, C, h, w]
            h, w = x.shape[-2:]
            x = x.flatten(2).transpose(1, 2)  # [B*T, h*w, C], row-major grid
            x = x.reshape(b, t, h * w, self.dim)  # [B, T, N, C]
            x = x + self._space_pos(h, w) + self._time_pos(t)
            for block in self.blocks:
                x = block(x)
            x = self.norm(x)  # [B, T, N, C]
            if self.pool_side is not None:
                x = _pool_grid(x.flatten(0, 1), (h, w), self.pool_side)  # [B*T, Q, C]
                x = x.view(b, t, -1, self.dim)  # [B, T, Q, C]
            return x


# ---------------------------------------------------------------------------------------------
# Hugging Face

_MODEL_TYPES = {"vit": ("vit",), "clip": ("clip", "clip_vision_model"), "blip2": ("blip-2",)}


def tiny_hf_config(kind: str) -> dict[str, Any]:
    """A tiny random-weight config dict for `VisualConfig.hf_config` (tests, smoke runs): width 32,
    2 layers, 32x32 images, 8x8 patches; BLIP-2 with a 2-layer Q-Former and 8 query tokens."""
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    if kind in ("vit", "clip"):
        return dict(vision)
    if kind == "blip2":
        qformer = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "encoder_hidden_size": 32,
            "cross_attention_frequency": 1,
        }
        return {"vision_config": vision, "qformer_config": qformer, "num_query_tokens": 8}
    raise ConfigError(f"tiny_hf_config: unknown kind {kind!r}; choose from {sorted(_MODEL_TYPES)}")


def paper_blip2_config() -> dict[str, Any]:
    """`VisualConfig.hf_config` of the papers' BLIP-2 (the `transformers.Blip2Config()` defaults):
    EVA ViT-g (1408-d, 39 layers, 224 px, patch 14) and a 12-layer 768-d Q-Former with 32
    queries. Random weights: load real ones with `hf_name_or_path` instead."""
    return {
        "vision_config": {
            "hidden_size": 1408,
            "intermediate_size": 6144,
            "num_hidden_layers": 39,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
        },
        "qformer_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "encoder_hidden_size": 1408,
            "cross_attention_frequency": 2,
        },
        "num_query_tokens": 32,
    }


def _local_dir(name: str) -> Path:
    """The local folder of a model given as a path or as a name in the local HF cache."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as e:  # not cached, or not a valid name
        raise ConfigError(
            f"VisualConfig.hf_name_or_path {name!r} is neither a folder nor a model in the local "
            f"Hugging Face cache (nothing is downloaded): {e}"
        ) from None


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (safetensors or PyTorch files, sharded or not)."""
    from safetensors.torch import load_file

    for index_name, loader in (
        ("model.safetensors.index.json", load_file),
        ("pytorch_model.bin.index.json", lambda p: torch.load(p, weights_only=True)),
    ):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(loader(str(folder / shard)))
            return out
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", weights_only=True)
    raise ConfigError(f"VisualConfig.hf_name_or_path: no model weights found in {folder}")


_BLIP2_KEY = re.compile(r"(?:^|\.)((?:vision_model|qformer)\..+|query_tokens)$")


class Blip2VisionQFormer(nn.Module):
    """BLIP-2's image side: the vision transformer, then the Q-Former whose learned query tokens
    cross-attend to its patch tokens. `[N, 3, H, W]` -> `[N, num_query_tokens, C_qformer]`."""

    def __init__(self, config: Any) -> None:
        from transformers import Blip2QFormerModel, Blip2VisionModel

        super().__init__()
        self.vision_model = Blip2VisionModel(config.vision_config)
        # the query path only: a stage-1 checkpoint's text feed-forward layers are not built here
        # (the text encoder kind "qformer" reads them)
        qformer_config = copy.deepcopy(config.qformer_config)
        qformer_config.use_qformer_text_input = False
        self.qformer = Blip2QFormerModel(qformer_config)
        n, c = config.num_query_tokens, config.qformer_config.hidden_size
        self.query_tokens = nn.Parameter(torch.zeros(1, n, c))
        nn.init.normal_(self.query_tokens, std=config.qformer_config.initializer_range)

    def load_checkpoint(self, folder: Path) -> None:
        """Load the vision, Q-Former and query-token weights of a BLIP-2 checkpoint folder (any
        BLIP-2 head; the language model's weights are skipped)."""
        state = {}
        for key, value in _read_state_dict(folder).items():
            m = _BLIP2_KEY.search(key)
            if m:
                state[m.group(1)] = value
        missing, _ = self.load_state_dict(state, strict=False)
        if missing:
            raise ConfigError(
                f"VisualConfig.hf_name_or_path: BLIP-2 checkpoint {folder} lacks "
                f"{len(missing)} weights, e.g. {missing[:3]}"
            )

    def forward(
        self, pixels: torch.Tensor, interpolate: bool = False, vision_grad: bool = True
    ) -> torch.Tensor:
        """`vision_grad=False` runs the vision transformer under `torch.no_grad()` (frozen ViT,
        trained Q-Former)."""
        with nullcontext() if vision_grad else torch.no_grad():
            image = self.vision_model(
                pixel_values=pixels, interpolate_pos_encoding=interpolate
            ).last_hidden_state  # [N, 1 + P, C_vision]
        queries = self.query_tokens.expand(pixels.shape[0], -1, -1)  # [N, Q, C_qformer]
        mask = torch.ones(image.shape[:2], dtype=torch.long, device=image.device)  # [N, 1 + P]
        return self.qformer(
            query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=mask
        ).last_hidden_state  # [N, Q, C_qformer]


def _hf_config_of(config: VisualConfig) -> dict[str, Any] | None:
    """The config dict to build random (or empty) weights from: `hf_config`, or the one a
    checkpoint shipped for `hf_name_or_path`; None: read the local folder."""
    if config.hf_config is not None:
        return config.hf_config
    found = shipped("visual", config.hf_name_or_path)
    return found.hf_config if found is not None else None


def _pair(x: Any) -> tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


class HFVisualBackbone(VisualBackbone):
    """A Hugging Face ViT, CLIP vision model or BLIP-2 vision + Q-Former applied to each frame.

    ViT / CLIP: patch tokens of the last layer (the class token dropped), row-major over the
    patch grid, optionally pooled to `tokens_per_frame`. BLIP-2: the Q-Former's query tokens.
    Frames of another size than the model's are encoded with interpolated position embeddings.
    """

    def __init__(self, config: VisualConfig) -> None:
        super().__init__(config)
        kind = config.hf_kind
        if kind == "blip2":
            self.model: nn.Module = self._build_blip2(config)
            hf_cfg = self._blip2_config
            self.dim = hf_cfg.qformer_config.hidden_size
            self.image_size = _pair(hf_cfg.vision_config.image_size)
            self.patch = _pair(hf_cfg.vision_config.patch_size)
            q = hf_cfg.num_query_tokens
            if config.tokens_per_frame not in (None, q):
                raise ConfigError(
                    f"VisualConfig.tokens_per_frame={config.tokens_per_frame} but this BLIP-2 "
                    f"gives {q} query tokens per frame; leave it None"
                )
            self.pool_side = None
            self.tokens_per_frame = q
        else:
            self.model = self._build_vit_like(config)
            mc = self.model.config
            self.dim = mc.hidden_size
            self.image_size = _pair(mc.image_size)
            self.patch = _pair(mc.patch_size)
            grid = (self.image_size[0] // self.patch[0], self.image_size[1] // self.patch[1])
            q = config.tokens_per_frame
            self.pool_side = math.isqrt(q) if q is not None else None
            self.tokens_per_frame = q if q is not None else grid[0] * grid[1]
        if config.frozen == "all":
            self._freeze(self.model)
        elif config.frozen == "vision":
            self._freeze(self.model.vision_model)

    @staticmethod
    def _check_model_type(name: str, kind: str) -> None:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(name, local_files_only=True).model_type
        except Exception as e:
            raise ConfigError(
                f"VisualConfig.hf_name_or_path {name!r}: no readable config in a local folder or "
                f"the local Hugging Face cache (nothing is downloaded): {e}"
            ) from None
        if model_type not in _MODEL_TYPES[kind]:
            raise ConfigError(
                f"VisualConfig.hf_name_or_path {name!r} is a {model_type!r} model, not what "
                f"hf_kind={kind!r} expects ({', '.join(_MODEL_TYPES[kind])})"
            )

    def _build_vit_like(self, config: VisualConfig) -> nn.Module:
        from transformers import CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

        kind = config.hf_kind
        hf_config = _hf_config_of(config)
        if hf_config is not None:
            try:
                if kind == "vit":
                    return ViTModel(ViTConfig(**hf_config), add_pooling_layer=False)
                return CLIPVisionModel(CLIPVisionConfig(**hf_config))
            except (TypeError, ValueError) as e:
                msg = f"VisualConfig.hf_config is not a valid {kind} config: {e}"
                raise ConfigError(msg) from e
        name = str(config.hf_name_or_path)
        self._check_model_type(name, kind)
        with quiet_transformers():
            if kind == "vit":
                return ViTModel.from_pretrained(
                    name, add_pooling_layer=False, local_files_only=True
                )
            return CLIPVisionModel.from_pretrained(name, local_files_only=True)

    def _build_blip2(self, config: VisualConfig) -> nn.Module:
        from transformers import Blip2Config

        hf_config = _hf_config_of(config)
        if hf_config is not None:
            try:
                hf_cfg = Blip2Config(**hf_config)
            except (TypeError, ValueError) as e:
                msg = f"VisualConfig.hf_config is not a valid BLIP-2 config: {e}"
                raise ConfigError(msg) from e
            model = Blip2VisionQFormer(hf_cfg)
        else:
            name = str(config.hf_name_or_path)
            self._check_model_type(name, "blip2")
            folder = _local_dir(name)
            hf_cfg = Blip2Config.from_pretrained(str(folder), local_files_only=True)
            model = Blip2VisionQFormer(hf_cfg)
            model.load_checkpoint(folder)
        self._blip2_config = hf_cfg
        return model

    def hf_config_dict(self) -> dict[str, Any]:
        """The Hugging Face config of the built model as a dict: `hf_config` rebuilds it."""
        if self.config.hf_kind == "blip2":
            return self._blip2_config.to_dict()
        return self.model.config.to_dict()  # type: ignore[union-attr,operator]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        b, t, _, h, w = frames.shape
        pixels = frames.flatten(0, 1)  # [B*T, 3, H, W]: frame-major within each clip
        interpolate = (h, w) != self.image_size
        vision_only = self.config.frozen == "vision"  # the Q-Former trains: no no_grad around it
        with nullcontext() if vision_only else self._grad_context():
            if self.config.hf_kind == "blip2":
                x = self.model(
                    pixels, interpolate=interpolate, vision_grad=not vision_only
                )  # [B*T, Q, C]
            else:
                x = self.model(
                    pixel_values=pixels, interpolate_pos_encoding=interpolate
                ).last_hidden_state[:, 1:]  # [B*T, P, C]: patch tokens, class token dropped
                if self.pool_side is not None:
                    grid = (h // self.patch[0], w // self.patch[1])
                    x = _pool_grid(x, grid, self.pool_side)  # [B*T, Q, C]
            return x.reshape(b, t, x.shape[1], self.dim)  # [B, T, Q, C]


def build_visual(config: VisualConfig) -> VisualBackbone:
    """The visual backbone `config` describes (frozen as `config.frozen` says)."""
    if config.kind == "scratch":
        return ScratchVisualBackbone(config)
    if config.kind == "hf":
        return HFVisualBackbone(config)
    raise ConfigError(f"VisualConfig.kind must be 'scratch' or 'hf', got {config.kind!r}")
