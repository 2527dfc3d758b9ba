"""Status files a file partner writes back are read whole: one larger than the bound is refused by name and size
(nothing after it applies until it is split or moved aside), and one sync reads only as many files as fit in the
bound, the rest at the next. The bound is made small here; the files are real files in the partner's folder."""

from __future__ import annotations

import pytest

import adapters.statusfiles as statusfiles
from adapters.base import PartnerUpdate, encode_updates
from adapters.statusfiles import STATUS_DIR, status_name
from gateway.bootstrap import App
from gateway.errors import DeliveryError
from gateway.services.dispatch import open_adapter
from tests.integration.test_partner_sync_chunks import handed_over_with_a_page_of_statuses

P = "demo-agency"


def _write(app: App, names_and_counts: list[tuple[str, int]], ids: list[int]) -> dict[str, int]:
    adapter = open_adapter(app, P)
    folder = adapter.path / STATUS_DIR  # type: ignore[attr-defined]
    adapter.close()
    sizes = {}
    for name, n in names_and_counts:
        data = encode_updates([PartnerUpdate(update_id=f"{name}-{i}", claim_id=ids[i % len(ids)], kind="status",
                                             code="BEARB") for i in range(n)])
        (folder / name).write_bytes(data)
        sizes[name] = len(data)
    return sizes


def test_an_oversized_status_file_is_refused_by_name_and_blocks_what_follows(app: App,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ids = handed_over_with_a_page_of_statuses(app, 3)  # status_name(1, 3): a small file first
    sizes = _write(app, [(status_name(4, 400), 400), (status_name(401, 402), 2)], ids)
    monkeypatch.setattr(statusfiles, "MAX_STATUS_BYTES", sizes[status_name(4, 400)] - 1)
    adapter = open_adapter(app, P)
    first = adapter.fetch_updates(None)  # the small file alone: the large one would pass the page's bound
    assert first.cursor == status_name(1, 3) and len(first.updates) == 3
    with pytest.raises(DeliveryError) as info:
        adapter.fetch_updates(first.cursor)
    text = str(info.value)
    assert status_name(4, 400) in text and f"{sizes[status_name(4, 400)]} bytes" in text and info.value.retryable
    assert "BEARB" not in text  # the name and the size, never the content

    monkeypatch.setattr(statusfiles, "MAX_STATUS_BYTES", 10 * sizes[status_name(4, 400)])
    rest = adapter.fetch_updates(first.cursor)  # split or the bound raised: it and the next one are read
    assert rest.cursor == status_name(401, 402) and len(rest.updates) == 402


def test_a_sync_reads_only_as_many_files_as_fit_the_bound(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = handed_over_with_a_page_of_statuses(app, 50)
    names = [status_name(51 + 50 * i, 100 + 50 * i) for i in range(3)]
    sizes = _write(app, [(n, 50) for n in names], ids)
    monkeypatch.setattr(statusfiles, "MAX_STATUS_BYTES", 2 * max(sizes.values()) + 10)
    adapter = open_adapter(app, P)
    cursor, pages = None, []
    while True:
        page = adapter.fetch_updates(cursor)
        if page.cursor == cursor:
            break
        pages.append(len(page.updates))
        cursor = page.cursor
    assert pages == [100, 100] and cursor == names[-1]  # two files per sync, every update read once
