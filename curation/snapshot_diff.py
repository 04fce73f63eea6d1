"""What changed between two snapshots of a dataset: examples added, removed, changed, moved."""
import difflib

from django.db.models import Q

from ftplatform.errors import ServiceError

from .choices import SnapshotStatus
from .models import FROZEN_DATASET_SETTINGS, Snapshot

DEFAULT_DIFF_LIMIT = 100
MAX_DIFF_LIMIT = 10_000


def previous_approved_snapshot(snapshot: Snapshot) -> Snapshot | None:
    """The dataset's latest approved snapshot created before ``snapshot`` (by creation time, then id)."""
    earlier = Q(created_at__lt=snapshot.created_at) | Q(created_at=snapshot.created_at, id__lt=snapshot.pk)
    return (Snapshot.objects.filter(earlier, dataset_id=snapshot.dataset_id, status=SnapshotStatus.APPROVED)
            .order_by("-created_at", "-id").first())


def _items(snapshot: Snapshot | None) -> dict:
    """{key: (example id, content hash, split)}; examples deleted since are keyed by content hash."""
    if snapshot is None:
        return {}
    rows = snapshot.items.values_list("example_id", "example_content_hash", "split")
    return {(("example", example_id) if example_id is not None else ("content", digest)): (example_id, digest, split)
            for example_id, digest, split in rows}


def message_changes(before: list[dict], after: list[dict]) -> list[dict]:
    """Per-message changes between two conversations, position by position.

    Returns:
        [{"position": 1-based, "change": "changed" | "added" | "removed", "role", "previous_role",
        "diff": unified diff of the contents (difflib.unified_diff, line by line)}] for the
        positions whose role, content or tool calls differ.
    """
    changes = []
    for position in range(1, max(len(before), len(after)) + 1):
        old = before[position - 1] if position <= len(before) else None
        new = after[position - 1] if position <= len(after) else None
        if old == new:
            continue
        old_text, new_text = _text(old), _text(new)
        diff = "\n".join(difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), "previous", "this",
                                              lineterm="", n=2))
        changes.append({
            "position": position,
            "change": "added" if old is None else "removed" if new is None else "changed",
            "role": (new or {}).get("role"),
            "previous_role": (old or {}).get("role"),
            "diff": diff,
        })
    return changes


def _text(message: dict | None) -> str:
    if message is None:
        return ""
    lines = [message.get("content") or ""]
    lines += [f"→ {c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls", [])]
    return "\n".join(lines)


def snapshot_diff(snapshot: Snapshot, previous: Snapshot | None = None, *, limit: int = DEFAULT_DIFF_LIMIT) -> dict:
    """Compare ``snapshot`` with ``previous`` (default: previous_approved_snapshot) item by item.

    Items are matched by example id (items whose example was deleted, by content hash): an
    example only in ``snapshot`` is added, only in ``previous`` removed; one in both with
    another content hash is changed (with per-message changes, see message_changes), and one
    in another split has moved. Without a previous snapshot every item is added. Frozen dataset
    settings (FROZEN_DATASET_SETTINGS: system prompt, language, ...) that differ are listed too.

    Args:
        limit: at most this many entries in each list (1 to MAX_DIFF_LIMIT); ``counts`` are complete.
    Returns:
        {"snapshot", "previous" (id or None), "previous_content_hash", "counts": {"added",
        "removed", "changed", "moved", "unchanged"}, "limit", "added" / "removed": [{"example_id",
        "content_hash", "split"}], "changed": [{"example_id", "split", "previous_split",
        "content_hash", "previous_content_hash", "messages": [...]}], "moved": [{"example_id",
        "content_hash", "from", "to"}], "settings_changed": [{"setting", "previous", "value"}]}, each
        item list ordered by example id.
    Raises:
        ServiceError: ``previous`` belongs to another dataset or is the snapshot itself, or a bad limit.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DIFF_LIMIT:
        raise ServiceError(f"limit must be an integer from 1 to {MAX_DIFF_LIMIT}, got {limit!r}")
    if previous is None:
        previous = previous_approved_snapshot(snapshot)
    elif previous.dataset_id != snapshot.dataset_id or previous.pk == snapshot.pk:
        raise ServiceError(f"snapshot {previous.pk} is not another snapshot of dataset '{snapshot.dataset}'")
    now, before = _items(snapshot), _items(previous)

    def order(key):
        return (key[0], key[1]) if key[0] == "example" else ("~", key[1])  # deleted examples last

    added = [now[k] for k in sorted(now.keys() - before.keys(), key=order)]
    removed = [before[k] for k in sorted(before.keys() - now.keys(), key=order)]
    common = sorted(now.keys() & before.keys(), key=order)
    changed = [k for k in common if now[k][1] != before[k][1]]
    moved = [k for k in common if now[k][2] != before[k][2]]

    messages = {}
    if changed[:limit]:
        wanted = [now[k][1] for k in changed[:limit]], [before[k][1] for k in changed[:limit]]
        messages.update(snapshot.items.filter(example_content_hash__in=wanted[0])
                        .values_list("example_content_hash", "messages"))
        messages.update(previous.items.filter(example_content_hash__in=wanted[1])
                        .values_list("example_content_hash", "messages"))

    def entry(row):
        return {"example_id": row[0], "content_hash": row[1], "split": row[2]}

    return {
        "snapshot": snapshot.pk,
        "previous": previous.pk if previous else None,
        "previous_content_hash": previous.content_hash if previous else None,
        "counts": {"added": len(added), "removed": len(removed), "changed": len(changed), "moved": len(moved),
                   "unchanged": len(common) - len(set(changed) | set(moved))},
        "limit": limit,
        "added": [entry(row) for row in added[:limit]],
        "removed": [entry(row) for row in removed[:limit]],
        "changed": [{"example_id": now[k][0], "split": now[k][2], "previous_split": before[k][2],
                     "content_hash": now[k][1], "previous_content_hash": before[k][1],
                     "messages": message_changes(messages[before[k][1]], messages[now[k][1]])}
                    for k in changed[:limit]],
        "moved": [{"example_id": now[k][0], "content_hash": now[k][1], "from": before[k][2], "to": now[k][2]}
                  for k in moved[:limit]],
        "settings_changed": [{"setting": name, "previous": getattr(previous, name), "value": getattr(snapshot, name)}
                             for name in FROZEN_DATASET_SETTINGS
                             if previous is not None and getattr(previous, name) != getattr(snapshot, name)],
    }
