"""Segue Studio's settings, read once from the environment with documented defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from segue.config import env_bool, env_float, env_int, env_str, insecure_dev_from_env
from segue.studio.clip_grid import ClipGrid

# Clip lengths the study design allows, in seconds: long enough to judge a feel.
CLIP_RANGE_S = (10.0, 20.0)
# What SEGUE_STUDIO_SHORT_CLIPS allows instead, for tests: shorter clips, same must-play rule.
SHORT_CLIP_RANGE_S = (0.5, 20.0)


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/segue/studio (or ~/.local/share/segue/studio)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "segue" / "studio"


@dataclass(frozen=True)
class StudioConfig:
    """Settings of `segue studio serve`.

    Environment:
        SEGUE_STUDIO_HOST: interface to bind (default "127.0.0.1": loopback only).
        SEGUE_STUDIO_PORT: HTTP port (default 8700).
        SEGUE_STUDIO_METRICS_PORT: Prometheus /metrics port (default 9104; 0 disables).
        SEGUE_STUDIO_DATA_DIR: database (SQLite default) and clip cache
            (default $XDG_DATA_HOME/segue/studio).
        SEGUE_STUDIO_DB_URL: SQLAlchemy URL; default SQLite in the data dir, or
            postgresql+psycopg://user@host/db for a shared deployment.
        SEGUE_STUDIO_ADMIN_PASSWORD_FILE: file whose first line is the admin password (at
            least 16 characters); without it the admin pages are closed.
        SEGUE_MATCHER_ADDR: the matcher whose library the clips come from
            (default 127.0.0.1:50052); the SDK's SEGUE_TOKEN* and SEGUE_TLS_* apply.
        SEGUE_STUDIO_SESSION_LENGTH: triplet pages per session (default 15).
        SEGUE_STUDIO_CLIP_S: clip length in seconds, 10 to 20 (default 12).
        SEGUE_STUDIO_CLIP_STEP_S: clips start on multiples of this many seconds, 0.1 to 60
            (default 2), so that sessions share clips and the library can be cut ahead.
        SEGUE_STUDIO_CLIP_STARTS: most clip starts per song, spread evenly over the song
            (default 8; 0: every multiple of the step), so a library's clips number at most
            songs x starts.
        SEGUE_STUDIO_WARM_CLIPS: most clips of the library cut ahead in the background at
            start-up, one song's grid point after another (default 2000, about 150 KB each
            at 12 s; 0: clips are only cut for the pages being served).
        SEGUE_STUDIO_ACTIVE_FRACTION: share of non-control pages chosen where the model's
            margin is smallest (default 0.5; the rest are random).
        SEGUE_STUDIO_GOLD_EVERY: one gold page in this many (default 5).
        SEGUE_STUDIO_REPEATS: pages shown twice per session (default 2).
        SEGUE_STUDIO_LOGIN_HOURS: how long a browser stays signed in (default 12).
        SEGUE_STUDIO_MAX_BODY_BYTES: largest request body (default 16 KiB).
        SEGUE_STUDIO_SHORT_CLIPS: "1" allows clips down to 0.5 s, for tests only; every clip
            must still be played to its end.
        SEGUE_STUDIO_MIXES_DIR: folder of mixes the admin's mix viewer shows, one folder per
            mix holding what `segue mix --playlist` wrote (audio, .json, .cue)
            (default: the data dir's "mixes").
    """

    host: str = "127.0.0.1"
    port: int = 8700
    metrics_port: int = 9104
    data_dir: Path = Path("studio-data")
    db_url: str = ""
    admin_password_file: str = ""
    matcher_address: str = "127.0.0.1:50052"
    session_length: int = 15
    clip_s: float = 12.0
    clip_step_s: float = 2.0
    clip_starts: int = 8
    warm_clips: int = 2000
    active_fraction: float = 0.5
    gold_every: int = 5
    repeats: int = 2
    login_hours: float = 12.0
    max_body_bytes: int = 16 * 1024
    short_clips: bool = False
    insecure_dev: bool = False
    mixes_dir: Path | None = None  # None: data_dir / "mixes"

    def __post_init__(self) -> None:
        low, high = SHORT_CLIP_RANGE_S if self.short_clips else CLIP_RANGE_S
        if not low <= self.clip_s <= high:
            raise ValueError(f"SEGUE_STUDIO_CLIP_S must be {low:g} to {high:g} s, "
                             f"got {self.clip_s:g}")
        if not 0.1 <= self.clip_step_s <= 60.0:
            raise ValueError(f"SEGUE_STUDIO_CLIP_STEP_S must be 0.1 to 60 s, "
                             f"got {self.clip_step_s:g}")
        if not 0 <= self.clip_starts <= 10_000:
            raise ValueError(f"SEGUE_STUDIO_CLIP_STARTS must be 0 to 10000, "
                             f"got {self.clip_starts}")
        if self.warm_clips < 0:
            raise ValueError(f"SEGUE_STUDIO_WARM_CLIPS must be 0 or more, got {self.warm_clips}")
        if not 3 <= self.session_length <= 200:
            raise ValueError("SEGUE_STUDIO_SESSION_LENGTH must be 3 to 200, "
                             f"got {self.session_length}")
        if not 0.0 <= self.active_fraction <= 1.0:
            raise ValueError("SEGUE_STUDIO_ACTIVE_FRACTION must be 0 to 1")
        if self.gold_every < 2 or self.repeats < 0 or self.repeats > self.session_length // 3:
            raise ValueError("SEGUE_STUDIO_GOLD_EVERY must be at least 2 and "
                             "SEGUE_STUDIO_REPEATS 0 to a third of the session length")

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite in the data folder."""
        return self.db_url or f"sqlite:///{self.data_dir / 'studio.db'}"

    @property
    def clip_grid(self) -> ClipGrid:
        """Where clips start: the one grid sessions draw from and the warm-up cuts."""
        return ClipGrid.of(self.clip_s, self.clip_step_s, self.clip_starts)

    @property
    def clip_cache_dir(self) -> Path:
        return self.data_dir / "clips"

    @property
    def mixes_folder(self) -> Path:
        """SEGUE_STUDIO_MIXES_DIR, or the data folder's "mixes"."""
        return self.mixes_dir if self.mixes_dir is not None else self.data_dir / "mixes"

    @classmethod
    def from_env(cls) -> StudioConfig:
        return cls(
            host=env_str("SEGUE_STUDIO_HOST", "127.0.0.1"),
            port=env_int("SEGUE_STUDIO_PORT", 8700),
            metrics_port=env_int("SEGUE_STUDIO_METRICS_PORT", 9104),
            data_dir=Path(env_str("SEGUE_STUDIO_DATA_DIR", str(default_data_dir()))),
            db_url=env_str("SEGUE_STUDIO_DB_URL", ""),
            admin_password_file=env_str("SEGUE_STUDIO_ADMIN_PASSWORD_FILE", ""),
            matcher_address=env_str("SEGUE_MATCHER_ADDR", "127.0.0.1:50052"),
            session_length=env_int("SEGUE_STUDIO_SESSION_LENGTH", 15),
            clip_s=env_float("SEGUE_STUDIO_CLIP_S", 12.0),
            clip_step_s=env_float("SEGUE_STUDIO_CLIP_STEP_S", 2.0),
            clip_starts=env_int("SEGUE_STUDIO_CLIP_STARTS", 8),
            warm_clips=env_int("SEGUE_STUDIO_WARM_CLIPS", 2000),
            active_fraction=env_float("SEGUE_STUDIO_ACTIVE_FRACTION", 0.5),
            gold_every=env_int("SEGUE_STUDIO_GOLD_EVERY", 5),
            repeats=env_int("SEGUE_STUDIO_REPEATS", 2),
            login_hours=env_float("SEGUE_STUDIO_LOGIN_HOURS", 12.0),
            max_body_bytes=env_int("SEGUE_STUDIO_MAX_BODY_BYTES", 16 * 1024),
            short_clips=env_bool("SEGUE_STUDIO_SHORT_CLIPS", False),
            insecure_dev=insecure_dev_from_env(),
            mixes_dir=Path(mixes) if (mixes := env_str("SEGUE_STUDIO_MIXES_DIR", "")) else None,
        )


__all__ = ["CLIP_RANGE_S", "StudioConfig", "default_data_dir"]
