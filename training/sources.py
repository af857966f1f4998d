"""The music sources `make data` fetches, and which whole sources are held out of training.

Every source is a Debian package from ../shared/data-sources.md (the allowed list), fetched
with `apt-get download` and unpacked with `dpkg-deb -x` (nothing is installed). Only the files
under the package's music folders are used; the package's copyright file is kept beside them.
Tracker-module packages (`tracker=True`) are rendered to audio when fetched (training.corpus).
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
# Tracker modules, rendered to audio by training.corpus (openmpt123).
MODULE_SUFFIXES = frozenset({".mod", ".xm", ".it", ".s3m", ".stm"})


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
    # The package holds tracker modules (rendered when fetched), not recordings.
    tracker: bool = False

    def music_files(self, unpacked: Path) -> list[Path]:
        """The package's music files (any audio suffix, or none; a tracker package's modules),
        sorted by path."""
        found: list[Path] = []
        for folder in self.music_dirs:
            for f in sorted((unpacked / folder).rglob("*")):
                if f.is_file() and self._wanted(f):
                    found.append(f)
        return found

    def _wanted(self, f: Path) -> bool:
        return (
            f.suffix.lower() in (MODULE_SUFFIXES if self.tracker else AUDIO_SUFFIXES)
            and f.name.startswith(self.prefix)
            and not any(s in f.name for s in self.skip)
            and f.name != "copyright"
        )


def _games(path: str) -> str:
    return f"usr/share/games/{path}"


# Tracker modules (name, package, module folder under usr/share, music licence, style of
# the game), rendered to 22050 Hz mono FLAC by training.corpus when fetched.
_TRACKER_PACKAGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("ironseed", "ironseed-data", "games/ironseed/sound", "GPL-3+", "sci-fi (MOD)"),
    ("tecnoballz", "tecnoballz-data", "games/tecnoballz/musics", "GPL-3+", "arcade (MOD)"),
    ("pekkakana2", "pekka-kana-2-data", "games/pekka-kana-2/data/music", "BSD-2", "platform (XM)"),
    ("heroes", "heroes-sound-tracks", "games/heroes/mod", "GPL-2+", "arcade (XM)"),
    ("pingus", "pingus-data", "games/pingus/data/music", "GPL-2", "puzzle-game (IT, S3M)"),
    ("freedroid", "freedroid-data", "games/freedroid/sound", "GPL-2+", "sci-fi (MOD)"),
    ("rafkill", "rafkill-data", "games/rafkill/music", "LGPL-2", "shooter (XM)"),
    ("pachi", "pachi-data", "pachi/music", "GPL", "platformer (S3M)"),
    ("biniax2", "biniax2-data", "games/biniax2/music", "zlib", "puzzle-game (IT)"),
    ("openinvaders", "open-invaders-data", "open-invaders", "GPL-2+", "arcade (MOD)"),
    ("bomberclone", "bomberclone-data", "games/bomberclone/music", "GPL-2", "arcade (XM, MOD)"),
    ("madbomber", "madbomber-data", "games/madbomber/music", "GPL-2", "arcade (MOD, IT, S3M)"),
    ("bb", "bb", "bb", "GPL-2+", "demoscene (S3M)"),
    ("penguincommand", "penguin-command", "games/penguin-command/sound", "GPL-2+", "arcade (S3M)"),
)

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
    PackageSource(
        "berusky2",
        "berusky2-data",
        (_games("berusky2/music"),),
        "GPL-2+",
        "puzzle-game score: orchestral, ambient",
    ),
    PackageSource(
        "supertuxkart",
        "supertuxkart-data",
        (_games("supertuxkart/data/music"),),
        "CC-BY-SA-3.0 / CC-BY-SA-4.0, some GPL (per file)",
        "kart-racing pop, rock, electronic",
        # The sped-up copies the game plays on the last lap.
        skip=("_fast", "farm_f"),
    ),
    PackageSource(
        "freedroidrpg",
        "freedroidrpg-data",
        ("usr/share/freedroidrpg/data/sound/music",),
        "GPL-2+",
        "sci-fi RPG: ambient, electronic",
    ),
    PackageSource(
        "unknownhorizons",
        "unknown-horizons",
        ("usr/share/unknown-horizons/content/audio/music",),
        "CC-BY-SA-3.0 / GPL-2+",
        "colonial strategy: folk, orchestral",
    ),
    PackageSource(
        "flare",
        "flare-game",
        (_games("flare/mods/fantasycore/music"),),
        "CC-BY-SA-3.0+",
        "fantasy action-RPG orchestral",
    ),
    PackageSource(
        "megaglest",
        "megaglest-data",
        (
            _games("megaglest/data/core/menu/music"),
            *(
                _games(f"megaglest/techs/megapack/factions/{f}/music")
                for f in ("egypt", "indian", "magic", "norsemen", "persian", "romans", "tech")
            ),
        ),
        "CC-BY-SA-3.0",
        "strategy: world, medieval, orchestral, electronic",
    ),
    PackageSource(
        "warmux",
        "warmux-data",
        (_games("warmux/music"),),
        "GPL-2",
        "comic game score, rock, world",
    ),
    PackageSource(
        "openclonk",
        "openclonk-data",
        (_games("openclonk/Music.ocg"),),
        "CC-BY-3.0 / CC0",
        "adventure orchestral, folk",
    ),
    PackageSource(
        "freecol",
        "freecol",
        (_games("freecol/default/resources/music/default"),),
        "CC-BY-4.0",
        "colonial-era orchestral, folk",
    ),
    PackageSource(
        "freedink",
        "freedink-data",
        (_games("dink/dink/Sound"),),
        "GPL-3 / CC-BY-3.0 / CC-BY-SA-3.0 (per file)",
        "fantasy RPG: medieval, comic",
    ),
    PackageSource(
        "fof_sectoid",
        "fretsonfire-songs-sectoid",
        (_games("fretsonfire/data/songs/sectoid"),),
        "GPL / MIT-style",
        "rock, metal",
        # The separate guitar (and rhythm) stems beside each song.
        skip=("guitar", "rhythm"),
    ),
    PackageSource(
        "fof_muldjord",
        "fretsonfire-songs-muldjord",
        (_games("fretsonfire/data/songs/muldjord"),),
        "CC-BY-SA-3.0",
        "rock, metal",
        skip=("guitar", "rhythm"),
    ),
    PackageSource(
        "lordsawar",
        "lordsawar-data",
        (_games("lordsawar/music"),),
        "GPL-3+",
        "fantasy strategy orchestral",
    ),
    PackageSource(
        "frozenbubble",
        "frozen-bubble-data",
        (_games("frozen-bubble/snd"),),
        "GPL-2",
        "arcade pop, electronic",
    ),
    PackageSource(
        "xmoto",
        "xmoto-data",
        (_games("xmoto/Textures/Musics"),),
        "GPL-2+",
        "electronic, rock",
    ),
    PackageSource(
        "adonthell",
        "adonthell-data",
        (_games("adonthell/games/wastesedge/audio"),),
        "GPL-2+",
        "fantasy RPG: medieval, ambient",
    ),
    PackageSource(
        "btanks",
        "btanks-data",
        (_games("btanks/data/tunes"),),
        "Battle Tanks licence (see its copyright)",
        "action-game rock, electronic",
    ),
    *(
        PackageSource(name, package, (f"usr/share/{folder}",), licence, style, tracker=True)
        for name, package, folder, licence, style in _TRACKER_PACKAGES
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
