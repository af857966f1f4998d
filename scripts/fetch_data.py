"""Fetches the training/evaluation music into data/ (gitignored) and decodes it once.

Sources (and only these):
- ../shared/music/librosa/*.ogg when present (8 recordings, CC-BY / CC-BY-NC / PD);
- the Debian packages of training/sources.py (37 game soundtracks and 14 packages of tracker
  modules from ../shared/data-sources.md; six soundtracks held out of training), fetched with
  `apt-get download` and unpacked with `dpkg-deb -x` (no install, works as root); only their
  music folders are kept, and tracker modules are rendered once through to 22050 Hz mono FLAC
  with openmpt123 (Debian);
- the PyPI package immich-memories-music (labels: mood = folder, style = file name);
- a local copy of FMA when given with --fma (see training/fma.py).

Writes data/audio/<source>/... (the original files or the modules' renderings, music only,
with the packages' copyright files), data/cache/<track>.npy (mono float16 at 22050 Hz) and
data/catalog.json, where every
track carries its source, package, licence and content hash (SHA-256 of the file). Files that
will not decode, files under 30 s (jingles) and byte-identical copies are left out.
Run: python scripts/fetch_data.py  (or `make data`). Idempotent: existing outputs are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.corpus import build_catalog, fetch_debian  # noqa: E402
from training.sources import PACKAGES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "music" / "librosa")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--fma", type=Path, default=None, help="root of a local FMA copy (optional)")
    p.add_argument("--fma-size", default="small", help="which fma_<size> audio folder to use")
    a = p.parse_args()
    for source in PACKAGES:
        fetch_debian(source, a.data / "audio")
    tracks = build_catalog(a.data, a.shared, a.fma, a.fma_size, a.jobs)
    by_source: dict[str, float] = {}
    for t in tracks:
        by_source[t.source] = by_source.get(t.source, 0.0) + t.seconds
    print(json.dumps({k: f"{v / 60:.1f} min" for k, v in by_source.items()}))


if __name__ == "__main__":
    main()
