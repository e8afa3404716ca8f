"""The progress line (migrator/progress.py): pure formatting, at the widths people use."""
from collections import Counter

from tqdm import tqdm

from migrator.progress import Bar, counts_text, line

RUN = {"read": 12_000, "done": 11_500, "failed": 1_234, "skipped": 17}


def test_at_80_columns_the_four_counts_stay_and_the_bar_goes():
    counts = counts_text("run", RUN)
    # What tqdm drew before: its bar and rate squeeze the counts off the line's end.
    before = tqdm.format_meter(11_517, None, 95.0, ncols=80, prefix="run contacts",
                               postfix=f"read {RUN['read']} written {RUN['done']} failed "
                                       f"{RUN['failed']} skipped {RUN['skipped']}", unit="rec")
    assert "skipped" not in before[:80]
    for total in (None, 20_000):
        text = line(80, "run contacts", counts, 11_517, total, 95.0, rate=120.0)
        assert len(text) <= 79
        for word in ("read 12,000", "written 11,500", "failed 1,234", "skipped 17"):
            assert word in text, text
        assert "|" not in text, "no room for a bar at 80 columns"
    with_total = line(80, "run contacts", counts, 11_517, 20_000, 95.0, rate=120.0)
    assert "57%" in with_total and "ETA 1:10" in with_total and with_total.startswith("run contacts:")


def test_a_wide_terminal_gets_a_bar_and_a_narrow_one_keeps_the_counts():
    counts = counts_text("run", RUN)
    wide = line(140, "run contacts", counts, 10_000, 20_000, 95.0, rate=120.0)
    assert "|" in wide and "50%" in wide and len(wide) <= 139
    narrow = line(60, "run contacts", counts, 10_000, 20_000, 95.0, rate=120.0)
    assert narrow.startswith("50% read 12,000") and "failed 1,234 skipped 17" in narrow and len(narrow) <= 59


def test_without_a_total_there_is_no_percentage():
    text = line(80, "run contacts", counts_text("run", RUN), 11_517, None, 95.0, rate=120.0)
    assert "%" not in text and "ETA" not in text and text.endswith("1:35")


def test_validate_says_valid_and_invalid_never_written():
    c = {"read": 2000, "valid": 1896, "invalid": 104, "failed": 104}
    assert counts_text("validate", c) == "read 2,000 valid 1,896 invalid 104 skipped 0"
    assert "written" not in counts_text("validate", c) and "failed" not in counts_text("validate", c)
    # A record that could not be read at all is failed without being invalid: said apart.
    assert counts_text("validate", {**c, "failed": 107}).endswith("invalid 104 unreadable 3 skipped 0")


def test_the_bar_draws_the_line_with_live_counts():
    counts: Counter = Counter({"read": 5, "done": 3, "failed": 1})
    bar = Bar(total=10, desc="run contacts", disable=True, mode="run", counts=counts)
    counts["done"] += 1
    text = bar.format_meter(4, 10, 2.0, ncols=80, prefix="run contacts", rate=2.0)
    assert "written 4" in text and "40%" in text and "ETA 0:03" in text
