"""1D multi-head agent attention (Han et al. 2023, adapted to token sequences as in RefAtomNet)
and the cross-stream fusion of agent maps (CAAF) and agent tokens (CATF).

Notation (one head): queries Q [N, d], keys K [N, d], values V [N, d], agents A [n_a, d],
scale s = 1 / sqrt(d).
    agent tokens     A   = W^T Q,  W = softmax_over_tokens(MLP(Q))           [n_a, d]
    agent aggregation V_A = softmax_over_tokens(s A K^T) V                    [n_a, d]
    agent broadcast   M   = softmax_over_agents(s Q A^T)                      [N, n_a]
                      out = M V_A                                             [N, d]
so out = softmax(s Q A^T) softmax(s A K^T) V. RefAtomNet replaces the 2D pooling that makes the
agents in the original with the learned token weights W, and drops the depthwise-conv branch and
the 2D position biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ravar.models.layers import merge_heads, split_heads


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Softmax of `scores` along `dim` over the entries where `mask` (broadcastable, True = valid)
    holds; masked entries get weight 0, and a slice with no valid entry is all zeros (not NaN)."""
    if mask is None:
        return scores.softmax(dim)
    mask = mask.expand_as(scores)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim) * mask
    return weights  # all-masked slices: uniform * 0 = 0


@dataclass
class AgentState:
    """One stream's projected tokens, split into heads; the pieces cross-stream fusion reads."""

    q: torch.Tensor  # [B, h, N, d]
    k: torch.Tensor  # [B, h, N, d]
    v: torch.Tensor  # [B, h, N, d]
    agents: torch.Tensor  # [B, h, n_a, d]
    mask: torch.Tensor | None  # [B, N] bool, True = real token (None: all real)


class AgentTokens(nn.Module):
    """Agents from the queries: a per-head MLP scores every token for each of the n_a agents, a
    softmax over the (valid) tokens turns the scores into weights W [N, n_a], and A = W^T Q."""

    def __init__(
        self, heads: int, head_dim: int, num_agents: int, hidden: int | None = None
    ) -> None:
        super().__init__()
        hidden = hidden or head_dim
        self.w1 = nn.Parameter(torch.empty(heads, head_dim, hidden))  # per-head first layer
        self.b1 = nn.Parameter(torch.zeros(heads, 1, hidden))
        self.w2 = nn.Parameter(torch.empty(heads, hidden, num_agents))
        self.b2 = nn.Parameter(torch.zeros(heads, 1, num_agents))
        for w in (self.w1, self.w2):
            nn.init.trunc_normal_(w, std=1.0 / math.sqrt(w.shape[1]))
        self.act = nn.GELU()

    def forward(self, q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q [B, h, N, d], mask [B, N] -> agents [B, h, n_a, d]."""
        hid = self.act(torch.einsum("bhnd,hdr->bhnr", q, self.w1) + self.b1)  # [B, h, N, r]
        scores = torch.einsum("bhnr,hra->bhna", hid, self.w2) + self.b2  # [B, h, N, n_a]
        key_mask = None if mask is None else mask[:, None, :, None]  # [B, 1, N, 1]
        weights = masked_softmax(scores, key_mask, dim=2)  # [B, h, N, n_a], sums to 1 over N
        return weights.transpose(-1, -2) @ q  # [B, h, n_a, d]


class AgentAttention(nn.Module):
    """Multi-head 1D agent attention over one token stream `[B, N, C]` with a padding mask.

    Padded keys never receive weight (neither in the agents nor in the aggregation) and padded
    queries produce zeros, so padded tokens change nothing in the valid outputs.
    """

    def __init__(self, dim: int, heads: int, num_agents: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"AgentAttention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.num_agents = num_agents
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.agent_tokens = AgentTokens(heads, self.head_dim, num_agents)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def project(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> AgentState:
        """x [B, N, C] -> queries, keys, values and agents of every head."""
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))  # [B, h, N, d]
        return AgentState(q=q, k=k, v=v, agents=self.agent_tokens(q, mask), mask=mask)

    def agent_map(self, q: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        """Query-agent map M = softmax_over_agents(s Q A^T): q [B, h, N, d], agents
        [B, h, n_a, d] -> [B, h, N, n_a]."""
        return (self.scale * q @ agents.transpose(-1, -2)).softmax(-1)

    def aggregation_map(self, agents: torch.Tensor, state: AgentState) -> torch.Tensor:
        """Agent-key map softmax_over_tokens(s A K^T) over the valid keys of `state`:
        agents [B, h, n_a, d] -> [B, h, n_a, N]."""
        scores = self.scale * agents @ state.k.transpose(-1, -2)  # [B, h, n_a, N]
        key_mask = None if state.mask is None else state.mask[:, None, None, :]  # [B, 1, 1, N]
        return masked_softmax(scores, key_mask, dim=-1)

    def aggregate(self, agents: torch.Tensor, state: AgentState) -> torch.Tensor:
        """Agent aggregation V_A = softmax_over_tokens(s A K^T) V over the valid keys of
        `state`: agents [B, h, n_a, d] -> [B, h, n_a, d]."""
        return self.aggregation_map(agents, state) @ state.v  # [B, h, n_a, d]

    def broadcast(
        self, agent_map: torch.Tensor, v_agents: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Agent broadcast out = M V_A, heads merged and projected; padded queries give zeros:
        agent_map [B, h, N, n_a], v_agents [B, h, n_a, d] -> [B, N, C]."""
        out = self.proj(merge_heads(agent_map @ v_agents))  # [B, N, C]
        if mask is not None:
            out = out * mask[..., None]
        return self.drop(out)

    def attend(self, st: AgentState) -> torch.Tensor:
        """Plain agent attention of a projected stream -> [B, N, C]."""
        return self.broadcast(
            self.agent_map(st.q, st.agents), self.aggregate(st.agents, st), st.mask
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Plain agent attention of one stream: x [B, N, C], mask [B, N] -> [B, N, C]."""
        return self.attend(self.project(x, mask))


def fuse_maps(
    visual_map: torch.Tensor, other_maps: list[torch.Tensor], query_mask: torch.Tensor | None
) -> torch.Tensor:
    """Cross-stream agent-attention fusion (CAAF) of the visual query-agent map:

        S = sum_pi M_pi                       (other streams' maps against the visual queries)
        M_hat = AVG[M, sigma_c(S) * M, sigma_t(S) * M]

    with sigma_c = softmax over the (valid) visual tokens (axis N) and sigma_t = softmax over the
    heads (axis h). visual_map and each of other_maps are [B, h, N, n_a]; query_mask [B, N].
    Returns [B, h, N, n_a]; with no other stream the map is returned unchanged. This fuses the
    query-agent maps M_QA as the paper's formula says (the authors' code fuses the agent-key
    aggregation maps instead).
    """
    if not other_maps:
        return visual_map
    s = torch.stack(other_maps).sum(0)  # [B, h, N, n_a]
    token_mask = None if query_mask is None else query_mask[:, None, :, None]  # [B, 1, N, 1]
    over_tokens = masked_softmax(s, token_mask, dim=2)  # [B, h, N, n_a]
    over_heads = s.softmax(dim=1)  # [B, h, N, n_a]
    return (visual_map + over_tokens * visual_map + over_heads * visual_map) / 3


def fuse_agents(visual_agents: torch.Tensor, other_agents: list[torch.Tensor]) -> torch.Tensor:
    """Cross-stream agent-token fusion (CATF), the same AVG as `fuse_maps` applied to the agents:

        S_A = sum_pi A_pi
        A_hat = AVG[A, sigma_c(S_A) * A, sigma_t(S_A) * A]

    with sigma_c = softmax over the channels of each agent (axis d, the last axis, as in the
    authors' code) and sigma_t = softmax over the heads (axis h). visual_agents and each of
    other_agents are [B, h, n_a, d]; returns [B, h, n_a, d] (unchanged with no other stream).
    """
    if not other_agents:
        return visual_agents
    s = torch.stack(other_agents).sum(0)  # [B, h, n_a, d]
    over_channels = s.softmax(dim=-1)
    over_heads = s.softmax(dim=1)
    return (visual_agents + over_channels * visual_agents + over_heads * visual_agents) / 3


def resample_tokens(maps: torch.Tensor, mask: torch.Tensor | None, n_out: int) -> torch.Tensor:
    """Each sample's valid entries (mask [B, N], in order) of maps [B, h, n_a, N], linearly
    resampled along the token axis to n_out points with both ends kept:

        n = number of valid entries,  x_j = j (n - 1) / (n_out - 1),  j = 0 .. n_out - 1
        out[..., j] = (1 - frac(x_j)) m[floor(x_j)] + frac(x_j) m[floor(x_j) + 1]

    Identity when all N entries are valid and N == n_out; zeros for a sample with none.
    Returns [B, h, n_a, n_out]."""
    b, n_tok = maps.shape[0], maps.shape[-1]
    if mask is None:
        mask = torch.ones(b, n_tok, dtype=torch.bool, device=maps.device)
    mask = mask.bool()
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # [B, N] valid first
    packed = maps.gather(-1, order[:, None, None, :].expand_as(maps))  # [B, h, n_a, N]
    last = (mask.sum(1) - 1).clamp(min=0)  # [B] index of the last valid entry
    steps = torch.linspace(0.0, 1.0, n_out, device=maps.device, dtype=maps.dtype)  # [n_out]
    pos = steps[None, :] * last[:, None].to(maps.dtype)  # [B, n_out]
    lo = pos.floor().long().clamp(max=n_tok - 1)  # [B, n_out]
    hi = torch.minimum(lo + 1, last[:, None])  # [B, n_out]
    frac = (pos - lo.to(maps.dtype))[:, None, None, :]  # [B, 1, 1, n_out]
    shape = (*maps.shape[:-1], n_out)

    def at(index: torch.Tensor) -> torch.Tensor:
        return packed.gather(-1, index[:, None, None, :].expand(shape))  # [B, h, n_a, n_out]

    out = (1 - frac) * at(lo) + frac * at(hi)
    return out * mask.any(1)[:, None, None, None]


def cross_stream_attend_authors(
    attention: AgentAttention,
    st: AgentState,
    others: list[AgentState],
    cross_attention_fusion: bool = True,
    cross_token_fusion: bool = True,
) -> torch.Tensor:
    """The cross-stream fusion of the authors' code (`caaf_maps="authors"`): CAAF fuses the
    agent-key aggregation maps, each stream's map made of its OWN agents and keys, and the fused
    agents (CATF) serve the broadcast:

        G_v   = softmax_over_tokens(s A_v K_v^T)       [B, h, n_a, N_v]
        G_pi  = softmax_over_tokens(s A_pi K_pi^T)     [B, h, n_a, N_pi]  -> resampled to N_v
        G_hat = AVG[G_v, sigma_tokens(S) * G_v, sigma_h(S) * G_v],  S = sum_pi G_pi
        A_hat = CATF(A_v; A_pi)   or A_v when off
        out   = softmax(s Q_v A_hat^T) (G_hat V_v)     [B, N_v, C]

    The authors' streams all have 32 tokens (learned projections along the token axis), so their
    maps add index by index; ravar's streams differ in length, so each other map's valid entries
    are linearly resampled to the visual stream's N_v (`resample_tokens`; the identity at equal
    lengths)."""
    gather_map = attention.aggregation_map(st.agents, st)  # [B, h, n_a, N_v]
    if cross_attention_fusion and others:
        n_v = gather_map.shape[-1]
        other_maps = [
            resample_tokens(attention.aggregation_map(o.agents, o), o.mask, n_v).transpose(-1, -2)
            for o in others
        ]  # each [B, h, N_v, n_a]
        gather_map = fuse_maps(gather_map.transpose(-1, -2), other_maps, st.mask).transpose(
            -1, -2
        )  # [B, h, n_a, N_v]
    v_agents = gather_map @ st.v  # [B, h, n_a, d]
    agents = st.agents  # [B, h, n_a, d]
    if cross_token_fusion:
        agents = fuse_agents(agents, [o.agents for o in others])
    return attention.broadcast(attention.agent_map(st.q, agents), v_agents, st.mask)


def cross_stream_attend(
    attention: AgentAttention,
    st: AgentState,
    others: list[AgentState],
    cross_attention_fusion: bool = True,
    cross_token_fusion: bool = True,
) -> torch.Tensor:
    """Agent attention of the visual stream guided by the other streams: the visual map is fused
    with the other streams' agent maps (CAAF) and the visual agents with theirs (CATF):

        M_v   = softmax(s Q_v A_v^T)                     [B, h, N_v, n_a]
        M_pi  = softmax(s Q_v A_pi^T)  for pi in others  (their agents, the visual queries)
        A_hat = CATF(A_v; A_pi)   or A_v when off
        M_hat = CAAF(M_v; M_pi)   or M_v when off
        out   = M_hat softmax(s A_hat K_v^T) V_v         [B, N_v, C]

    `st` is `attention.project` of the visual tokens, `others` the projected other streams (same
    heads and head width). With both switches off this is plain agent attention.
    """
    visual_map = attention.agent_map(st.q, st.agents)  # [B, h, N_v, n_a]
    agents = st.agents  # [B, h, n_a, d]
    if cross_token_fusion:
        agents = fuse_agents(agents, [o.agents for o in others])
    if cross_attention_fusion:
        other_maps = [attention.agent_map(st.q, o.agents) for o in others]  # [B, h, N_v, n_a]
        visual_map = fuse_maps(visual_map, other_maps, st.mask)
    return attention.broadcast(visual_map, attention.aggregate(agents, st), st.mask)
