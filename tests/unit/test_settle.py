"""Settling a write in doubt from a target's own list: the matching (pure) and Realeflow's
two readers of its newest 25 — the one that settles a lost answer during a run, the one
that settles what a crash left in flight — against lists given by hand."""
from __future__ import annotations

import uuid

from migrator.connectors import settle
from migrator.connectors.realeflow import (BODY_NAMES, LIST_SIZE, RECORD_NAMES, ROW_NAMES, _CrashSettler,
                                           _GuidReader, match_key)


def test_names_emails_and_phones_compare_as_the_target_stores_them():
    assert settle.words("John, Smith") == settle.words(" smith  JOHN ") == ("john", "smith")
    assert settle.email(" Ann@Example.COM ") == "ann@example.com"
    assert settle.phone("+1 (555) 010-2030") == settle.phone("15550102030") == "5550102030"
    assert settle.words(None) == () and settle.phone(None) == ""


def test_one_match_found_absent_or_undecided():
    assert settle.one_match(["7"]) == settle.Settled(True, "7")
    assert settle.one_match(["7", "7"]).found                 # one record seen twice
    assert settle.one_match([]) is settle.ABSENT and not settle.ABSENT.found
    assert settle.one_match(["7"], claimed={"7"}) is settle.ABSENT
    both = settle.one_match(["7", "8"])
    assert not both.decided and "2 records" in both.why


def test_realeflow_keys_of_what_was_sent_and_what_the_list_shows_agree():
    record = {"FullName": "John Smith", "Email": "John@Smith.com", "Phone": "+18888888888"}
    body = {"fullname": "John Smith", "email": "John@Smith.com", "phone": "+18888888888"}
    row = {"fullName": "John, Smith", "email": "john@smith.com", "phone": None, "mobilePhoneDigits": "18888888888"}
    assert match_key("contacts", record, RECORD_NAMES) == match_key("contacts", body, BODY_NAMES) \
        == match_key("contacts", row, ROW_NAMES)
    assert match_key("contacts", {**row, "email": "other@smith.com"}, ROW_NAMES) != match_key("contacts", body, BODY_NAMES)
    prop = {"Address": "1 Main St", "City": "Cleveland", "State": "oh", "ZipCode": "44113-1234"}
    prow = {"address": "1 MAIN ST", "city": "cleveland", "state": "OH", "zipCode": "44113"}
    assert match_key("properties", prop, RECORD_NAMES) == match_key("properties", prow, ROW_NAMES)


def _row(cid: int, name: str) -> dict:
    return {"id": str(uuid.UUID(int=cid)), "contactId": cid, "fullName": name, "email": None,
            "phone": None, "mobilePhoneDigits": None}


class _Lists:
    """An HTTP client that answers each list read with the next list given."""

    def __init__(self, *lists: list[dict]):
        self.lists = list(lists)

    async def request(self, method: str, path: str, **kw):
        rows = self.lists.pop(0)
        return type("R", (), {"json": lambda self: rows})()


KEY = match_key("contacts", {"fullname": "Ann Lee"}, BODY_NAMES)


async def test_a_lost_create_is_found_in_the_reads_made_since_it_was_sent():
    old = _row(1, "Ann Lee")   # the same name, there before: never taken for ours
    reader = _GuidReader("contacts", "/api/contact/list", "contactId", 20)
    await reader.baseline(_Lists([old]))
    mark = reader.begin()
    reader.sending[KEY] += 1
    settled, reads = await reader.settle_lost(_Lists([_row(2, "Ann Lee"), _row(3, "Bo"), old]), KEY, mark)
    assert settled == settle.Settled(True, str(uuid.UUID(int=2))) and reads == 1
    # A second create of that name, lost too: the first's contact is ours now — absent.
    mark = reader.begin()
    settled, _ = await reader.settle_lost(_Lists([_row(2, "Ann Lee"), _row(3, "Bo"), old]), KEY, mark)
    assert settled is settle.ABSENT


async def test_a_lost_create_is_left_undecided_when_the_list_cannot_tell():
    reader = _GuidReader("contacts", "/api/contact/list", "contactId", 20)
    await reader.baseline(_Lists([_row(1, "Old")]))
    mark = reader.begin()
    reader.sending[KEY] += 1
    # Another user created 30 meanwhile: the previous read's newest row fell out of the 25.
    crowd = [_row(100 + i, f"Other {i}") for i in range(LIST_SIZE)]
    settled, _ = await reader.settle_lost(_Lists(crowd), KEY, mark)
    assert not settled.decided and "more than 25" in settled.why
    # Two creates of one name in flight at once: whichever landed cannot be told.
    reader = _GuidReader("contacts", "/api/contact/list", "contactId", 20)
    await reader.baseline(_Lists([]))
    mark = reader.begin()
    reader.sending[KEY] += 2
    settled, _ = await reader.settle_lost(_Lists([_row(2, "Ann Lee")]), KEY, mark)
    assert not settled.decided and "same name" in settled.why


def _known(done: dict[str, float]):
    async def known(ids: list[str]) -> dict[str, float]:
        return {i: done[i] for i in ids if i in done}
    return known


async def test_after_a_crash_the_newest_25_decide_only_when_they_reach_back_far_enough():
    ann = {"FullName": "Ann Lee"}
    # Fewer than 25: the list holds everything; found, or never created.
    s = _CrashSettler("contacts", [_row(2, "Ann Lee"), _row(1, "Bo")], 100.0, _known({}))
    assert await s.settle(ann, 100.0) == settle.Settled(True, str(uuid.UUID(int=2)))
    assert await s.settle(ann, 100.0) is settle.ABSENT           # taken by the first
    # 25 rows, none known to be older than the send: absent cannot be said.
    crowd = [_row(100 + i, f"Other {i}") for i in range(LIST_SIZE)]
    s = _CrashSettler("contacts", crowd, 100.0, _known({}))
    res = await s.settle(ann, 100.0)
    assert not res.decided and "no longer reach back" in res.why
    # 25 rows, one a record the job marked done before the send: the list reaches back.
    s = _CrashSettler("contacts", crowd, 100.0, _known({str(uuid.UUID(int=124)): 99.0}))
    assert await s.settle(ann, 100.0) is settle.ABSENT
    # A row another record of the job is done with is never taken; two others are ambiguous.
    rows = [_row(5, "Ann Lee"), _row(4, "Ann Lee"), _row(3, "Ann Lee")]
    s = _CrashSettler("contacts", rows, 100.0, _known({str(uuid.UUID(int=3)): 99.0}))
    res = await s.settle(ann, 100.0)
    assert not res.decided and "2 records" in res.why
    # The list could not be read: undecided, saying why.
    res = await _CrashSettler("contacts", None, 100.0, _known({}), "it could not be read").settle(ann, 100.0)
    assert not res.decided and res.why == "it could not be read"
