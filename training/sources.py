"""The music sources `make data` fetches, and which whole sources are held out of training.

Every source is a Debian package from ../shared/data-sources.md (the allowed list), fetched
with `apt-get download` and unpacked with `dpkg-deb -x` (nothing is installed). Only the files
under the package's music folders are used; the package's copyright file is kept beside them.
The licence strings are the music's licence as the package's copyright file states it.

HELD_OUT_SOURCES are never trained on: `make eval` reports the leave-source-out protocol on
them (music the model has never heard, from soundtracks it has never heard), beside the older
protocol that holds out tracks within the training sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Shorter files are jingles and sound effects, not songs.
MIN_TRACK_SECONDS = 30.0
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".mp3", ".flac", ".wav", ".opus", ""})


@dataclass(frozen=True)
class PackageSource:
    """One Debian package's music: where it lies in the package and under which licence."""

    name: str
    package: str
    music_dirs: tuple[str, ...]
    license: str
    style: str
    # File-name prefix the music files share (zaz keeps its music beside its images).
    prefix: str = ""
    # Name fragments of files that are not songs of their own (raw copies, stems).
    skip: tuple[str, ...] = ()

    def music_files(self, unpacked: Path) -> list[Path]:
        """The package's music files (any audio suffix, or none), sorted by path."""
        found: list[Path] = []
        for folder in self.music_dirs:
            for f in sorted((unpacked / folder).rglob("*")):
                if f.is_file() and self._wanted(f):
                    found.append(f)
        return found

    def _wanted(self, f: Path) -> bool:
        return (
            f.suffix.lower() in AUDIO_SUFFIXES
            and f.name.startswith(self.prefix)
            and not any(s in f.name for s in self.skip)
            and f.name != "copyright"
        )


def _games(path: str) -> str:
    return f"usr/share/games/{path}"


PACKAGES: tuple[PackageSource, ...] = (
    PackageSource(
        "wesnoth",
        "wesnoth-1.16-music",
        (_games("wesnoth/1.16/data/core/music"),),
        "GPL-2+",
        "fantasy orchestral",
    ),
    PackageSource(
        "supertux",
        "supertux-data",
        (_games("supertux2/music"),),
        "GPL-2+ / CC-BY-SA (per file)",
        "chiptune-flavoured game pop",
    ),
    PackageSource(
        "naev",
        "naev-data",
        ("usr/share/naev/dat/snd/music",),
        "GPL-2+ / GPL-3 / CC-BY-3.0 / CC-BY-SA-3.0 (per file)",
        "space ambient, electronic, orchestral combat",
    ),
    PackageSource(
        "widelands",
        "widelands-data",
        (_games("widelands/data/music"),),
        "GPL-2+ (3 tracks CC-BY-SA-3.0)",
        "fantasy orchestral, celtic/folk",
    ),
    PackageSource(
        "blobwars",
        "blobwars-data",
        (_games("blobwars/music"),),
        "CC-BY-SA-3.0 / CC-BY-3.0",
        "electronic/orchestral game score",
    ),
    PackageSource(
        "fillets",
        "fillets-ng-data",
        (_games("fillets-ng/music"),),
        "GPL-2",
        "ambient, quirky",
    ),
    PackageSource(
        "enigma",
        "enigma-data",
        (_games("enigma/music"),),
        "GPL",
        "puzzle-game ambient",
    ),
    PackageSource(
        "trackballs",
        "trackballs-data",
        (_games("trackballs/music"),),
        "GPL-2+ / Ethymonics free music licence",
        "electronic, chip",
    ),
    PackageSource(
        "zaz",
        "zaz-data",
        (_games("zaz"),),
        "CC-BY-SA-3.0",
        "electronic",
        prefix="mus",
    ),
    PackageSource(
        "ardentryst",
        "ardentryst",
        (_games("ardentryst/Music"),),
        "CC-BY-SA-3.0",
        "fantasy RPG score",
        skip=("_raw",),
    ),
    PackageSource(
        "wordwarvi",
        "wordwarvi-sound",
        ("usr/share/wordwarvi/sounds",),
        "CC-BY-SA-3.0",
        "rock/blues",
    ),
    PackageSource(
        "miceamaze",
        "miceamaze",
        (_games("miceamaze/music"),),
        "CC-BY-3.0",
        "electronic/house",
    ),
    PackageSource(
        "noiz2sa",
        "noiz2sa-data",
        (_games("noiz2sa/sounds"),),
        "BSD-2",
        "abstract electronic",
        prefix="stg",
    ),
    PackageSource(
        "opsound",
        "asterisk-moh-opsound-wav",
        ("usr/share/asterisk/moh",),
        "CC-BY-SA-3.0",
        "downtempo electronic",
    ),
    # Held out (HELD_OUT_SOURCES): never trained on.
    PackageSource(
        "hedgewars",
        "hedgewars-data",
        (_games("hedgewars/Data/Music"),),
        "GPL-2 / GFDL-1.3",
        "themed: orchestral, ethnic, comic, rock",
    ),
    PackageSource(
        "colobot",
        "colobot-common-sounds",
        (_games("colobot/music"),),
        "GPL-3+",
        "sci-fi electronic/orchestral",
    ),
    PackageSource(
        "marsshooter",
        "marsshooter-data",
        (_games("marsshooter/audio/music"),),
        "CC-BY-SA-3.0",
        "electronic/rock",
    ),
    PackageSource(
        "pushover",
        "pushover-data",
        ("usr/share/pushover/themes",),
        "GPL-3+",
        "themed (aztec, japanese, electro, space)",
    ),
    PackageSource(
        "starfighter",
        "starfighter-data",
        ("usr/share/starfighter/music",),
        "GPL-2+",
        "electronic/trance",
    ),
    PackageSource(
        "davegnukem",
        "davegnukem-data",
        (_games("davegnukem/music"),),
        "MIT or GPL",
        "retro/chip, techno loops",
    ),
)

# Whole soundtracks that no training run reads: six styles, none shared with a training pack.
HELD_OUT_SOURCES = frozenset(
    {"hedgewars", "colobot", "marsshooter", "pushover", "starfighter", "davegnukem"}
)


def package_source(name: str) -> PackageSource:
    """The package source called name (KeyError if there is none)."""
    for s in PACKAGES:
        if s.name == name:
            return s
    raise KeyError(name)
