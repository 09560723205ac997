"""What a process remembers having written: bounded, the most recent kept."""

from __future__ import annotations

from shared.store.outbox import WrittenRows


def test_the_oldest_ids_go_first_and_a_rewritten_id_is_young_again() -> None:
    written = WrittenRows(size=3)
    written.add(["a", "b", "c"])
    written.add(["a"])  # written again: now the youngest
    written.add(["d"])
    assert "b" not in written
    assert all(row_id in written for row_id in ("a", "c", "d"))
    assert len(written) == 3
