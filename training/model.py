"""SegueNet: log-mel front end -> per-window conv encoder -> GRU over windows -> heads.

Everything is per 1 s window or causal over windows, and all song-level memory is one flat
`state` vector, so running the model chunk by chunk (whole windows, state threaded through) is
the same computation as one offline pass.

State layout (STATE_DIM floats): [GRU hidden | pool max (heads) | pool sum-exp (heads) |
pool weighted sum (heads * value_dim)]. All zeros is the state of a new song.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.frontend import FRAMES_PER_WINDOW, N_MELS, WINDOW_SAMPLES, LogMelFrontEnd

HIDDEN = 128
EMBEDDING_DIM = 64
TRANSITION_DIM = 64
FEEL_DIM = 32
POOL_HEADS = 4
# Hidden width of the entry/exit MLPs (kept small so the stream graph stays under 1 MB).
TRANSITION_HIDDEN = 96
POOL_VALUE_DIM = 16
# The encoder's conv channels at width 1.0.
CONV_CHANNELS = (64, 96, 128)
# Attention scores are squashed into [-SCORE_RANGE, SCORE_RANGE] so that exp() never underflows
# against the running max, which starts at 0 for an all-zeros state.
SCORE_RANGE = 5.0
STATE_DIM = HIDDEN + 2 * POOL_HEADS + POOL_HEADS * POOL_VALUE_DIM


@dataclass
class Outputs:
    embedding: torch.Tensor  # [B, W, EMBEDDING_DIM]
    entry: torch.Tensor  # [B, W, TRANSITION_DIM]
    exit: torch.Tensor  # [B, W, TRANSITION_DIM]
    feel: torch.Tensor  # [B, FEEL_DIM]
    frames: torch.Tensor  # [B, W * FRAMES_PER_WINDOW, N_MELS]
    state: torch.Tensor  # [B, STATE_DIM]


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
    )


def conv_channels(width: float) -> tuple[int, int, int]:
    """Channels of the encoder's three convs at a width multiplier (1.0: 64, 96, 128)."""
    c1, c2, c3 = (round(c * width / 8) * 8 for c in CONV_CHANNELS)
    return c1, c2, c3


class WindowEncoder(nn.Module):
    """Log-mel frames of one window [N, FRAMES_PER_WINDOW, N_MELS] -> content vector [N, HIDDEN].

    `width` scales the convs only: the content, state and outputs keep their sizes, so the
    exported graphs' inputs and outputs (the MECOMP contract) do not depend on it.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = conv_channels(width)
        # Log-mel of music sits around -12 +- 4; start the input near unit scale.
        self.in_shift = nn.Parameter(torch.full((N_MELS, 1), 12.0))
        self.in_scale = nn.Parameter(torch.full((N_MELS, 1), 0.25))
        self.convs = nn.Sequential(_conv(N_MELS, c1, 1), _conv(c1, c2, 2), _conv(c2, c3, 2))
        # Conv features (mean, max over time) plus the raw log-mel mean/std of the window.
        self.proj = nn.Linear(2 * c3 + 2 * N_MELS, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.transpose(1, 2) + self.in_shift) * self.in_scale
        y = self.convs(x)
        mean = x.mean(dim=2)
        std = (x - mean.unsqueeze(2)).square().mean(dim=2).clamp_min(1e-6).sqrt()
        pooled = torch.cat([y.mean(dim=2), y.amax(dim=2), mean, std], dim=1)
        return torch.relu(self.norm(self.proj(pooled)))


def _mlp(d_in: int, d_out: int, hidden: int = HIDDEN) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class TransitionHead(nn.Module):
    """MLP over the window's features plus a linear path from one edge frame's log-mel.

    Music is continuous across a cut: the last frame before it and the first frame after it
    are nearly the same spectrum (on held-out tracks, raw log-mel distance of those two frames
    alone picks the true continuation ~69% of the time). The linear path hands that seam
    spectrum to the vector directly; the MLP adds the window's content and context.
    """

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.mlp = _mlp(d_in + N_MELS, TRANSITION_DIM, TRANSITION_HIDDEN)
        self.edge = nn.Linear(N_MELS, TRANSITION_DIM, bias=False)

    def forward(self, features: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(torch.cat([features, edge], dim=-1)) + self.edge(edge)
        return F.normalize(out, dim=-1)


class SegueNet(nn.Module):
    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.width = width
        self.frontend = LogMelFrontEnd()
        self.encoder = WindowEncoder(width)
        self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.embedding_head = nn.Linear(HIDDEN, EMBEDDING_DIM)
        self.entry_head = TransitionHead(HIDDEN)
        self.exit_head = TransitionHead(2 * HIDDEN)
        self.pool_score = nn.Linear(2 * HIDDEN, POOL_HEADS)
        self.pool_value = nn.Linear(2 * HIDDEN, POOL_HEADS * POOL_VALUE_DIM)
        self.feel_head = nn.Linear(POOL_HEADS * POOL_VALUE_DIM, FEEL_DIM)

    def encode_windows(self, pcm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pcm [B, W*WINDOW_SAMPLES] -> (log-mel frames [B, W*F, M], content [B, W, HIDDEN])."""
        frames = self.frontend(pcm)
        return frames, self.encode_frames(frames)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """log-mel frames [B, W*F, M] -> per-window content [B, W, HIDDEN]."""
        per_window = frames.reshape(-1, FRAMES_PER_WINDOW, N_MELS)
        content: torch.Tensor = self.encoder(per_window).reshape(frames.shape[0], -1, HIDDEN)
        return content

    def forward(self, pcm: torch.Tensor, state: torch.Tensor) -> Outputs:
        frames, content = self.encode_windows(pcm)
        return self.heads(frames, content, state)

    def heads(self, frames: torch.Tensor, content: torch.Tensor, state: torch.Tensor) -> Outputs:
        """frames [B, W*F, M] and their content [B, W, HIDDEN] (the same W windows) -> outputs."""
        batch = content.shape[0]
        h0 = state[:, :HIDDEN]
        o = HIDDEN
        run_max = state[:, o : o + POOL_HEADS]
        run_sum = state[:, o + POOL_HEADS : o + 2 * POOL_HEADS]
        run_acc = state[:, o + 2 * POOL_HEADS :].reshape(batch, POOL_HEADS, POOL_VALUE_DIM)

        context, h_last = self.gru(content, h0.unsqueeze(0).contiguous())
        # First and last log-mel frame of each window, on the encoder's input scale.
        per_window = frames.reshape(batch, content.shape[1], FRAMES_PER_WINDOW, N_MELS)
        shift, scale = self.encoder.in_shift.squeeze(1), self.encoder.in_scale.squeeze(1)
        first = (per_window[:, :, 0] + shift) * scale
        last = (per_window[:, :, -1] + shift) * scale
        both = torch.cat([content, context], dim=2)

        # Streamable attention pooling (log-sum-exp with a running max).
        scores = SCORE_RANGE * torch.tanh(self.pool_score(both) / SCORE_RANGE)  # [B, W, H]
        values = self.pool_value(both).reshape(batch, -1, POOL_HEADS, POOL_VALUE_DIM)
        new_max = torch.maximum(run_max, scores.amax(dim=1))
        carry = torch.exp(run_max - new_max)
        weights = torch.exp(scores - new_max.unsqueeze(1))  # [B, W, H]
        new_sum = run_sum * carry + weights.sum(dim=1)
        new_acc = run_acc * carry.unsqueeze(2) + (weights.unsqueeze(3) * values).sum(dim=1)
        pooled = (new_acc / new_sum.unsqueeze(2)).reshape(batch, POOL_HEADS * POOL_VALUE_DIM)

        new_state = torch.cat(
            [h_last.squeeze(0), new_max, new_sum, new_acc.reshape(batch, -1)], dim=1
        )
        return Outputs(
            embedding=F.normalize(self.embedding_head(context), dim=-1),
            entry=self.entry_head(content, first),
            exit=self.exit_head(both, last),
            feel=F.normalize(self.feel_head(pooled), dim=-1),
            frames=frames,
            state=new_state,
        )


def zero_state(batch: int) -> torch.Tensor:
    return torch.zeros(batch, STATE_DIM)


def windows_in(samples: int) -> int:
    return samples // WINDOW_SAMPLES
