"""The pure part of `migrator undo`: which target record is deleted, put back or kept, and
whether the target changed a record since the job wrote it."""
import orjson

from migrator.engine import Sampler
from migrator.protocols import Page, Record
from migrator.undo import changed, plan_groups


def row(sid, tid, action, key=None, previous=None, wrote=None, state=None):
    dump = lambda v: None if v is None else orjson.dumps(v).decode()  # noqa: E731
    return ("contacts", sid, tid, action, key, dump(previous), dump(wrote), state)


def test_a_record_the_job_created_is_deleted_with_what_the_job_merged_onto_it():
    [g] = plan_groups([row("1", "t", "created", wrote={"email": "a@x.io"}),
                       row("2", "t", "updated", "email=a@x.io", previous={"email": "a@x.io"},
                           wrote={"tags": ["b"]})], lambda s: s)
    assert (g.kind, g.source_ids, g.wrote) == ("delete", ["1", "2"], {"email": "a@x.io", "tags": ["b"]})


def test_a_record_the_target_held_is_put_back_to_its_values_before_the_first_write():
    [g] = plan_groups([row("1", "t", "updated", "email=a@x.io", previous={"firstName": "Old"}, wrote={"firstName": "A"}),
                       row("2", "t", "updated", "email=a@x.io", previous={"firstName": "A"}, wrote={"firstName": "B"})],
                      lambda s: s)
    assert (g.kind, g.previous, g.wrote) == ("restore", {"firstName": "Old"}, {"firstName": "B"})


def test_a_delta_after_the_first_writes_moves_the_order_of_last_writes_not_the_first_previous():
    """Two source records merged into one held record; a delta then wrote the first again,
    so it is last in the order of last writes: the previous values are still the first
    write's (``undo_log.at``), and what the target should hold is the delta's."""
    first = row("1", "t", "updated", "email=a@x.io", previous={"firstName": "Old"}, wrote=None) + (False, 10.0)
    second = row("2", "t", "updated", "email=a@x.io", previous={"firstName": "A"}, wrote={"firstName": "B"}) + (
        False, 20.0)
    delta = first[:6] + (orjson.dumps({"firstName": "Changed"}).decode(),) + first[7:]
    [g] = plan_groups([second, delta], lambda s: s)
    assert (g.kind, g.previous, g.wrote) == ("restore", {"firstName": "Old"}, {"firstName": "Changed"})


def test_what_undo_cannot_know_is_kept_with_its_reason():
    groups = plan_groups([row("1", "t1", "matched", "lookup after interruption"),
                          row("2", "t2", "updated", "email=a@x.io"),
                          row("3", "t3", "matched", "email=b@x.io")], lambda s: s)
    assert [g.kind for g in groups] == ["keep"] * 3
    assert "interruption" in groups[0].why and "not read" in groups[1].why


def test_an_in_flight_undo_is_carried_out_and_a_finished_one_is_not_repeated():
    [g] = plan_groups([row("1", "t", "created", state="inflight")], lambda s: s)
    assert g.state == "inflight"
    [g] = plan_groups([row("1", "t", "created", state="undone")], lambda s: s)
    assert g.state == "undone"


def test_changed_compares_what_the_target_reads_back_as_a_server_normalises_it():
    wrote = {"email": "Ann@X.io", "phone": "(415) 555-0100", "tags": ["VIP"], "name": "Ann B", "firstName": "Ann"}
    now = {"email": "ann@x.io", "phone": "+14155550100", "tags": ["vip", "other"], "firstName": "Ann"}
    assert changed(now, wrote) == []
    assert changed({**now, "firstName": "Anne"}, wrote) == ["firstName"]
    assert changed({**now, "tags": ["other"]}, wrote) == ["tags"]
    assert changed({**now, "phone": "+14155550199"}, wrote) == ["phone"]


def test_the_sampler_takes_every_kth_record_from_the_first_until_it_has_n():
    s = Sampler(3, 10)
    picked = []
    for start in (0, 4, 8):
        page = Page([Record(str(i), {}) for i in range(start, min(start + 4, 10))], cursor=start)
        picked += [r.source_id for r in s.pick(page).records]
    assert picked == ["0", "3", "6"] and not s.done   # picked, but not yet handed on
    s.handed = 3
    assert s.done


def test_a_sampler_asked_row_by_row_by_the_source_picks_the_same_records():
    """``sample_rows``: the source asks ``wants`` per listed row, before fetching it."""
    by_page, by_row = Sampler(3, 10), Sampler(3, 10)
    pages = [Page([Record(str(i), {}) for i in range(start, min(start + 4, 10))], cursor=start)
             for start in (0, 4, 8)]
    from_pages = [r.source_id for p in pages for r in by_page.pick(p).records]
    from_rows = [r.source_id for p in pages for r in p.records if by_row.wants()]
    assert from_rows == from_pages == ["0", "3", "6"]
