"""Snapshots every collection on every Qdrant peer and keeps the newest few.

Collection snapshots are per peer (each holds only its own shard replicas), so a restorable
backup needs one snapshot from each peer. Runs in the matcher image, which has qdrant-client.

Env: QDRANT_PEERS (count), QDRANT_PEER_URL ("http://qdrant-{i}.qdrant-headless:6333"),
QDRANT_API_KEY, SNAPSHOTS_KEEP (per collection and peer, default 7).
"""

from __future__ import annotations

import os
import sys

from qdrant_client import QdrantClient


def snapshot_peer(url: str, api_key: str | None, keep: int) -> int:
    client = QdrantClient(url=url, api_key=api_key, timeout=600)
    made = 0
    for collection in client.get_collections().collections:
        created = client.create_snapshot(collection_name=collection.name, wait=True)
        print(f"{url} {collection.name}: created {created.name if created else '?'}")
        made += 1
        snapshots = client.list_snapshots(collection_name=collection.name)
        # Names embed the creation time, so sorting by it keeps the newest.
        for old in sorted(snapshots, key=lambda s: s.creation_time or "")[:-keep]:
            client.delete_snapshot(collection_name=collection.name, snapshot_name=old.name)
            print(f"{url} {collection.name}: deleted {old.name}")
    return made


def main() -> int:
    peers = int(os.environ.get("QDRANT_PEERS", "3"))
    template = os.environ.get("QDRANT_PEER_URL", "http://qdrant-{i}.qdrant-headless:6333")
    api_key = os.environ.get("QDRANT_API_KEY") or None
    keep = max(1, int(os.environ.get("SNAPSHOTS_KEEP", "7")))
    failed = 0
    for i in range(peers):
        url = template.format(i=i)
        try:
            snapshot_peer(url, api_key, keep)
        except Exception as exc:  # one unreachable peer must not stop the others' backups
            print(f"{url}: snapshot failed: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
