"""`make studio` (or `make studio MUSIC=~/Music`): Segue Studio over a real matcher, ready to use.

1. Starts the matcher as a real service on loopback, with authentication on.
2. Indexes the music folder into it (`segue index --local`: the ONNX model in-process).
3. Writes a random admin password to out/studio/admin-password (mode 0600).
4. Creates an invite link and prints it with the admin page's address.
5. Serves the Studio on http://127.0.0.1:8700 until Ctrl-C.

Answers stay in out/studio/studio.db (SQLite); set SEGUE_STUDIO_DB_URL for PostgreSQL.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devkit.localstack import running_stack  # noqa: E402
from segue.cli import main as segue_cli  # noqa: E402
from segue.music import bundled_tracks_dir  # noqa: E402
from segue.studio.config import StudioConfig  # noqa: E402
from segue.studio.serve import serve  # noqa: E402


def admin_password(folder: Path) -> Path:
    """A fresh random admin password in a file only its owner can read."""
    path = folder / "admin-password"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(18) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--music", type=Path, help="folder of songs (default: bundled tracks)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "studio")
    parser.add_argument("--port", type=int, default=8700)
    args = parser.parse_args()
    music = (args.music or bundled_tracks_dir()).expanduser().resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    with running_stack(args.out / "stack", services=("matcher",), auth=True) as stack:
        assert stack.token is not None
        os.environ["SEGUE_TOKEN"] = stack.token
        matcher = stack.grpc["matcher"]
        if segue_cli(["index", str(music), "--local", "--matcher", matcher]) != 0:
            print("some files could not be indexed; the Studio serves the rest", file=sys.stderr)
        password = admin_password(args.out)
        config = dataclasses.replace(
            StudioConfig.from_env(), data_dir=args.out, matcher_address=matcher,
            admin_password_file=str(password), port=args.port)
        base = f"http://{config.host}:{config.port}"
        os.environ["SEGUE_STUDIO_DATA_DIR"] = str(args.out)
        segue_cli(["studio", "invite", "--label", "make studio", "--base-url", base])
        print(f"admin: {base}/admin (password in {password})\nCtrl-C stops the Studio.")
        try:
            return serve(config)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
