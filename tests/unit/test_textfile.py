"""Pure parts of reading text files: which encoding, how undecodable bytes are marked and
shown, and the check of a mapping's paths against the columns a source holds."""
import codecs

import pytest

from migrator.connectors import textfile
from migrator.errors import JobError, MappingError
from tests.unit.test_mapping import load


@pytest.mark.parametrize("head,setting,expected", [
    (b"id,a\n", None, "utf-8"),
    (codecs.BOM_UTF8 + b"id", None, "utf-8-sig"),
    (codecs.BOM_UTF16_LE + "id".encode("utf-16-le"), None, "utf-16"),
    (codecs.BOM_UTF16_BE + "id".encode("utf-16-be"), "auto", "utf-16"),
    (codecs.BOM_UTF32_LE + "id".encode("utf-32-le"), None, "utf-32"),
    (b"id,a\n", "cp1252", "cp1252"),                       # an explicit setting wins
    (codecs.BOM_UTF8 + b"id", "utf-8", "utf-8-sig"),      # and still skips a UTF-8 BOM
])
def test_choose_encoding(tmp_path, head, setting, expected):
    (tmp_path / "f.csv").write_bytes(head)
    assert textfile.choose_encoding(tmp_path / "f.csv", setting, "job.yaml:3") == expected


def test_an_unknown_encoding_is_a_user_error(tmp_path):
    (tmp_path / "f.csv").write_bytes(b"id\n")
    with pytest.raises(JobError, match=r"job.yaml:3: unknown encoding 'cp-1252'"):
        textfile.choose_encoding(tmp_path / "f.csv", "cp-1252", "job.yaml:3")


def test_marks_count_and_give_back_the_bytes():
    marks = textfile.Marks()
    marks.decoding_here()
    raw = "C1,Zoë,".encode() + "Müller".encode("cp1252")
    text = raw.decode("utf-8", textfile.MARK)
    assert marks.pending == 1 and textfile.count_marks(text) == 1
    assert textfile.unmark(text, "utf-8") == raw


def test_a_short_western_sample_is_named_cp1252():
    assert textfile.guess_encoding("Jürgen Müller, Straße".encode("cp1252")) == "cp1252"
    assert textfile.bad_text(b"M\xfcller", "cp1252") == r"b'M\xfcller', which reads as 'Müller' in cp1252"


def test_check_columns_names_the_line_and_the_nearest_column():
    sm = load("source: csv\ntarget: rei\nstreams:\n  contacts:\n"
              "    skip_if: [{path: Status, equals: x}]\n    fields:\n"
              "      firstName: Frist Name\n      name: {template: '{First Name} {Last}'}\n"
              "      email: {path: \"Emails[0].value\"}\n      notes_count: {path: 'length(@)'}\n").streams["contacts"]
    with pytest.raises(MappingError, match=r"^m.yaml:7: 'Frist Name', which is not a column of x.csv "
                                           r"\(did you mean 'First Name'\?\)$"):
        sm.check_columns("a column of x.csv", ["Status", "First Name", "Last", "Emails"])
    with pytest.raises(MappingError, match=r"^m.yaml:9: path 'Emails\[0\].value' reads 'Emails'"):
        sm.check_columns("a column of x.csv", ["Status", "Frist Name", "First Name", "Last"])
    with pytest.raises(MappingError, match=r"^m.yaml:5: 'Status', which is not .* \(columns: 'Emails', "):
        sm.check_columns("a column of x.csv", ["Frist Name", "First Name", "Last", "Emails"])
    sm.check_columns("a column of x.csv", ["Status", "Frist Name", "First Name", "Last", "Emails"])
