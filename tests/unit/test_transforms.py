import random
from datetime import date, datetime

import phonenumbers
import pytest
from dateutil import parser as dateutil_parser
from faker import Faker
from nameparser import HumanName

from migrator.mapping.transforms import (
    TRANSFORMS, TransformError, _fast_name, _parse_date, build_transform, get_transform,
)
from migrator.schema import phone_valid


def t(name, arg=None, defaults=None):
    return build_transform(name, arg, defaults)


REQUIRED = {
    "strip", "lower", "upper", "title", "phone_e164", "split_name", "first_name", "last_name",
    "join", "split", "date", "truncate", "zip5", "state_abbrev", "bool", "int", "float",
    "first", "unique", "drop_empty", "map", "default", "digits", "address_part", "prefix",
    "suffix", "replace", "zip", "join_name", "join_notes", "join_address",
    "rest", "first_if_new",
}


def test_registry_has_every_transform_and_get_raises_keyerror():
    assert REQUIRED <= set(TRANSFORMS)
    assert get_transform("strip") is TRANSFORMS["strip"]
    with pytest.raises(KeyError):
        get_transform("lowr")


@pytest.mark.parametrize("name", sorted(REQUIRED - {"default"}))
def test_none_in_none_out(name):
    args = {"map": {"a": "b"}, "prefix": "x", "suffix": "x", "replace": {"old": "a", "new": "b"},
            "truncate": 3, "address_part": "city"}
    assert t(name, args.get(name))(None) is None


# ---- text ----------------------------------------------------------------------------


def test_case_and_whitespace():
    assert t("strip")("  Ann  ") == "Ann"
    assert t("lower")("ANN@X.COM") == "ann@x.com"
    assert t("upper")("ca") == "CA"
    assert t("title")("o'neil's BAR-b-q") == "O'Neil's Bar-B-Q"
    assert t("strip")(42) == "42"


def test_string_transforms_apply_to_each_item_of_a_list():
    assert t("strip")([" a ", None, "b "]) == ["a", None, "b"]
    assert t("lower")(["A", "B"]) == ["a", "b"]
    assert t("prefix", "#")(["a", "b"]) == ["#a", "#b"]


def test_string_transforms_refuse_objects():
    with pytest.raises(TransformError, match="expected text, got an object"):
        t("strip")({"a": 1})


@pytest.mark.parametrize("name", ["strip", "lower", "upper", "title", "first", "unique",
                                  "digits", "zip5", "bool", "int", "float", "split_name",
                                  "first_name", "last_name", "drop_empty"])
def test_argumentless_transforms_refuse_an_argument(name):
    with pytest.raises(ValueError, match="takes no argument"):
        get_transform(name)("x")


def test_truncate():
    assert t("truncate", 5)("Hello world") == "Hello"
    assert t("truncate", {"n": 6})("Hello world") == "Hello"  # cut, then trailing space dropped
    assert t("truncate", 50)("short") == "short"
    for bad in (0, -1, "5", None, True, [3]):
        with pytest.raises(ValueError):
            get_transform("truncate")(bad)


def test_prefix_suffix_replace_digits():
    assert t("prefix", "RV-")(123) == "RV-123"
    assert t("suffix", " (import)")("Ann") == "Ann (import)"
    assert t("replace", {"old": "-", "new": ""})("415-555-0123") == "4155550123"
    assert t("replace", {"old": "x"})("axb") == "ab"
    assert t("digits")("(415) 555-0123 ext. 9") == "41555501239"
    assert t("digits")("none here") is None
    with pytest.raises(ValueError):
        get_transform("prefix")(None)
    with pytest.raises(ValueError):
        get_transform("suffix")("")
    with pytest.raises(ValueError, match="needs a non-empty 'old'"):
        get_transform("replace")({"new": "x"})
    with pytest.raises(ValueError, match="unknown option 'olde'"):
        get_transform("replace")({"olde": "x", "new": "y"})
    with pytest.raises(ValueError):
        get_transform("replace")("x")


# ---- lists ---------------------------------------------------------------------------


def test_join_and_split():
    assert t("join")(["a", "", None, "b"]) == "a, b"
    assert t("join", " | ")(["a", "b"]) == "a | b"
    assert t("join", {"separator": ";"})(["a", 1]) == "a;1"
    assert t("join")("already text") == "already text"
    assert t("split")("a, b,,c ") == ["a", "b", "c"]
    assert t("split", ";")("a; b") == ["a", "b"]
    assert t("split")(["a,b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        get_transform("split")("")
    with pytest.raises(ValueError):
        get_transform("join")(5)
    with pytest.raises(TransformError):
        t("join")([{"a": 1}])


def test_first_unique_drop_empty():
    assert t("first")(["", None, "x", "y"]) == "x"
    assert t("first")([]) is None
    assert t("first")("scalar") == "scalar"
    assert t("unique")(["Buyer", "buyer", "VIP", "BUYER", 1, 1, {"a": 1}, {"a": 1}]) == \
        ["Buyer", "VIP", 1, {"a": 1}]
    assert t("unique")("scalar") == "scalar"
    assert t("drop_empty")("") is None
    assert t("drop_empty")("   ") is None
    assert t("drop_empty")("x") == "x"
    assert t("drop_empty")(["", "a", None, "  ", "b"]) == ["a", "b"]
    assert t("drop_empty")(["", None]) is None
    assert t("drop_empty")(0) == 0


def test_default():
    fill = t("default", "new_lead")
    assert fill(None) == "new_lead"
    assert fill("") == "new_lead"
    assert fill([]) == "new_lead"
    assert fill("active") == "active"
    assert t("default", ["Imported"])(None) == ["Imported"]
    with pytest.raises(ValueError, match="needs the value"):
        get_transform("default")(None)


# ---- map -----------------------------------------------------------------------------


def test_map_compares_keys_as_text_ignoring_case():
    table = t("map", {"Lead": "new_lead", 4: "active", True: "yes", "1.0": "one"})
    assert table("lead") == "new_lead"
    assert table(" LEAD ") == "new_lead"
    assert table(4) == "active"
    assert table("4") == "active"
    assert table(4.0) == "active"
    assert table("true") == "yes"
    assert table(["Lead", None, 4]) == ["new_lead", "active"]


def test_map_without_default_refuses_unknown_values():
    with pytest.raises(TransformError, match=r"no mapping for value 'Other'"):
        t("map", {"Lead": "new_lead"})("Other")


def test_map_table_form_with_default():
    table = t("map", {"table": {"Lead": "new_lead"}, "default": "backlog"})
    assert table("Lead") == "new_lead"
    assert table("Other") == "backlog"
    assert t("map", {"table": {"Spam": None}, "default": None})("x") is None
    # a value table that merely has a key named "table" is still a table
    assert t("map", {"table": "furniture", "chair": "furniture"})("TABLE") == "furniture"


@pytest.mark.parametrize("arg, message", [
    (None, "needs a table"),
    ({}, "needs a table"),
    (["a"], "needs a table"),
    ({"table": {}}, "non-empty table"),
    ({"Lead": 1, "lead": 2}, "are the same"),
])
def test_map_bad_arguments(arg, message):
    with pytest.raises(ValueError, match=message):
        get_transform("map")(arg)


# ---- typed values --------------------------------------------------------------------


def test_bool():
    conv = t("bool")
    for text in ("yes", "Y", "true", "TRUE", "1", "on", "t"):
        assert conv(text) is True
    for text in ("no", "N", "false", "0", "off", "f"):
        assert conv(text) is False
    assert conv(1) is True and conv(0) is False and conv(True) is True
    assert conv("") is None
    with pytest.raises(TransformError, match="not a yes/no value: 'maybe'"):
        conv("maybe")
    with pytest.raises(TransformError):
        conv(2)


def test_int_and_float():
    assert t("int")("42") == 42
    assert t("int")(" 1,234 ") == 1234
    assert t("int")("$350,000") == 350000
    assert t("int")("12.0") == 12
    assert t("int")(7.0) == 7
    assert t("int")("") is None
    assert t("float")("3.5") == 3.5
    assert t("float")(2) == 2.0 and isinstance(t("float")(2), float)
    assert t("float")("$1,250.50") == 1250.5
    with pytest.raises(TransformError, match="not a whole number"):
        t("int")("12.5")
    with pytest.raises(TransformError, match="not a number"):
        t("int")("twelve")
    with pytest.raises(TransformError, match="not a number"):
        t("int")("1,5")
    with pytest.raises(TransformError):
        t("int")(True)
    with pytest.raises(TransformError):
        t("float")("nan")
    with pytest.raises(TransformError):
        t("float")(False)


# ---- phones --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["(415) 555-0123", "415.555.0123", "1-415-555-0123",
                                 "+1 415 555 0123", "4155550123", 4155550123, "415 555 0123 "])
def test_phone_e164_us_forms(raw):
    assert t("phone_e164")(raw) == "+14155550123"


def test_phone_e164_other_regions_and_defaults():
    assert t("phone_e164")("+44 20 7946 0958") == "+442079460958"
    assert t("phone_e164", "GB")("020 7946 0958") == "+442079460958"
    assert t("phone_e164", {"region": "gb"})("020 7946 0958") == "+442079460958"
    assert t("phone_e164", None, {"region": "GB"})("020 7946 0958") == "+442079460958"
    # an explicit argument wins over the mapping's default
    assert t("phone_e164", "US", {"region": "GB"})("(415) 555-0123") == "+14155550123"
    assert t("phone_e164")("604-555-0123") == "+16045550123"  # Canada, through the US region


@pytest.mark.parametrize("raw", ["123", "555-1234", "(111) 555-0123", "not a phone",
                                 "+1 (415) 555-01234", "+99 1234 5678"])
def test_phone_e164_refuses_invalid_numbers(raw):
    with pytest.raises(TransformError, match="not a valid phone number"):
        t("phone_e164")(raw)


def test_phone_e164_blank_and_bad_region():
    assert t("phone_e164")("  ") is None
    with pytest.raises(ValueError, match="unknown region"):
        get_transform("phone_e164")("XX")


def test_phone_fast_path_agrees_with_phonenumbers():
    rng = random.Random(11)
    conv = t("phone_e164")
    for _ in range(1500):
        digits = str(rng.randint(2000000000, 9999999999))
        raw = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        number = phonenumbers.parse(raw, "US")
        expected = (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    if phonenumbers.is_valid_number(number) else None)
        try:
            got = conv(raw)
        except TransformError:
            got = None
        assert got == expected, raw
        assert phone_valid("+1" + digits) == (expected is not None)


# ---- names ---------------------------------------------------------------------------


def test_names():
    assert t("split_name")("John Q. Smith") == {"first": "John", "last": "Smith", "middle": "Q."}
    assert t("split_name")("Ann Lee") == {"first": "Ann", "last": "Lee", "middle": ""}
    assert t("first_name")("Smith, John") == "John"
    assert t("last_name")("Smith, John") == "Smith"
    assert t("first_name")("Dr. Juan de la Cruz Jr.") == "Juan"
    assert t("last_name")("Dr. Juan de la Cruz Jr.") == "de la Cruz"
    assert t("last_name")("Cher") is None
    assert t("first_name")("  ") is None
    assert t("first_name")(["Ann Lee", "Bo Diddley"]) == ["Ann", "Bo"]


@pytest.mark.parametrize(("full", "first", "last"), [
    ("李 小龙", "小龙", "李"),          # family name first, with a space
    ("李小龙", "小龙", "李"),           # and without: one-syllable family name
    ("王芳", "芳", "王"),
    ("欧阳小明", "小明", "欧阳"),       # a two-syllable family name
    ("김민준", "민준", "김"),           # Korean
    ("김 민준", "민준", "김"),
    ("남궁민수", "민수", "남궁"),
    ("山田太郎", "太郎", "山田"),       # Japanese: two and two kanji
    ("山田 太郎", "太郎", "山田"),
    ("佐藤はなこ", "はなこ", "佐藤"),   # kanji family name, kana given name
    ("Иван Петров", "Иван", "Петров"),  # Cyrillic: given name first
    ("Ελένη Παπαδοπούλου", "Ελένη", "Παπαδοπούλου"),
    ("أحمد عبد الله", "أحمد", "عبد الله"),  # Arabic: given name, then the rest
    ("José Muñoz", "José", "Muñoz"),
])
def test_names_split_the_way_their_script_writes_them(full, first, last):
    assert (t("first_name")(full), t("last_name")(full)) == (first, last)
    assert t("split_name")(full)["first"] == first


@pytest.mark.parametrize(("first", "last", "full"), [
    ("小龙", "李", "李小龙"), ("민준", "김", "김민준"), ("太郎", "山田", "山田太郎"),
    ("Ann", "Lee", "Ann Lee"), ("Иван", "Петров", "Иван Петров"), ("أحمد", "حسن", "أحمد حسن"),
])
def test_join_name_writes_the_script_order_and_split_gives_the_parts_back(first, last, full):
    assert t("join_name")([first, last]) == full
    assert (t("first_name")(full), t("last_name")(full)) == (first, last)


def test_join_name_leaves_out_empty_parts():
    join = t("join_name")
    assert join(["Ann", None, "  "]) == "Ann"
    assert join([None, "李"]) == "李"
    assert join(["Mary", "Ann", "Lee"]) == "Mary Ann Lee"
    assert join(["Bruce", "李"]) == "Bruce 李"  # family name first only when both parts are CJK
    assert join([]) is None and join(None) is None
    assert join(" Cher ") == "Cher"


def test_join_notes_keeps_each_note_date():
    join = t("join_notes")
    notes = [{"content": " called back ", "created_at": "2024-03-01T22:13:39Z"},
             {"content": "", "created_at": "2024-03-02T00:00:00Z"},
             {"content": "no date"}]
    assert join(notes) == "2024-03-01 — called back\n\nno date"
    spark = [{"Note": "toured", "CreatedTimestamp": "2023-12-31T23:59:00.000Z"}]
    assert join(spark) == "2023-12-31 — toured"
    assert t("join_notes", {"separator": "\n"})([["2024-01-02", "a"], "b"]) == "2024-01-02 — a\nb"
    assert t("join_notes", {"text": "body", "date": "on"})([{"body": "x", "on": "01/02/2024"}]) \
        == "2024-01-02 — x"
    assert join([]) is None and join("plain") == "plain"
    long = "n" * 12_000
    assert join([{"content": long, "created_at": "2024-03-01"}]) == "2024-03-01 — " + long
    with pytest.raises(ValueError, match="separator"):
        t("join_notes", {"separator": 3})


def test_rest_and_first_if_new():
    assert t("rest")(["a", "b", "c"]) == ["b", "c"] and t("rest")(["a"]) is None
    assert t("rest")("a") == "a"
    pick = t("first_if_new")
    assert pick(["+14155550134", "+12125550188", None]) == "+14155550134"
    assert pick(["+14155550134", None, "+14155550134"]) is None
    assert pick([None, "x"]) is None and pick(["A@x.com", "a@X.com"]) is None
    assert pick("kept") == "kept"


def test_zip_keeps_the_plus_four():
    conv = t("zip")
    assert conv("92103") == "92103"
    assert conv("92103-1234") == conv("92103 1234") == conv("921031234") == "92103-1234"
    assert conv("2134") == "02134" and conv(" ") is None
    for bad in ("921", "ABCDE", "92103-12", "SW1A 1AA", True):
        with pytest.raises(TransformError):
            conv(bad)


def test_join_address_keeps_the_place_of_an_empty_city():
    join = t("join_address")
    assert join(["1 Main St", "San Diego", "CA", "92103"]) == "1 Main St, San Diego, CA 92103"
    assert join(["1 Main St", "", "CA", "92103-1234"]) == "1 Main St, , CA 92103-1234"
    assert join(["1 Main St", None, None, None]) == "1 Main St"
    assert join(["1 Main St", "Austin"]) == "1 Main St, Austin"
    assert join([None, "", None, ""]) is None


def test_fast_name_split_agrees_with_nameparser():
    checked = 0
    for locale in ("en_US", "en_GB", "es_MX", "de_DE"):
        fake = Faker(locale)
        fake.seed_instance(5)
        for i in range(300):
            text = fake.name() if i % 3 else f"{fake.last_name()}, {fake.first_name()}"
            fast = _fast_name(text)
            if fast is None:
                continue
            checked += 1
            name = HumanName(text)
            assert fast == (name.first, name.middle, name.last), text
    assert checked > 600


# ---- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1975-03-24", "03/24/1975", "3/24/1975", "24 Mar 1975",
                                 "March 24, 1975", "Mar 24 1975", "24-Mar-1975",
                                 "1975-03-24T10:20:30Z", "24.03.1975", "Monday, March 24th 1975",
                                 date(1975, 3, 24), datetime(1975, 3, 24, 8, 0)])
def test_date_common_forms(raw):
    assert t("date")(raw) == "1975-03-24"


def test_date_epochs_and_options():
    assert t("date")(164894400000) == "1975-03-24"      # epoch milliseconds
    assert t("date")(164894400) == "1975-03-24"         # epoch seconds
    assert t("date")("164894400000") == "1975-03-24"
    assert t("date", {"format": "%d/%m/%Y"})("1975-03-24") == "24/03/1975"
    assert t("date", "%m/%d/%Y")("1975-03-24") == "03/24/1975"
    assert t("date")("04/03/1975") == "1975-04-03"
    assert t("date", {"dayfirst": True})("04/03/1975") == "1975-03-04"
    assert t("date", None, {"dayfirst": True})("04/03/1975") == "1975-03-04"
    assert t("date")("") is None


@pytest.mark.parametrize("raw, message", [
    ("not a date", "not a valid date"),
    ("1975-02-30", "not a valid date"),
    ("13/13/1975", "not a valid date"),
    ("March 1975", "incomplete date"),
    ("24 March", "incomplete date"),
    ("5", "incomplete date"),
    (True, "expected a date"),
])
def test_date_refuses_bad_or_incomplete_values(raw, message):
    with pytest.raises(TransformError, match=message):
        t("date")(raw)


@pytest.mark.parametrize("arg", ["YYYY-MM-DD", {"format": 5}, {"dayfirst": "yes"},
                                 {"formt": "%Y"}, ["%Y"]])
def test_date_bad_arguments(arg):
    with pytest.raises(ValueError):
        get_transform("date")(arg)


def test_date_fast_paths_agree_with_dateutil():
    rng = random.Random(3)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    for _ in range(400):
        y, m, d = rng.randint(1900, 2030), rng.randint(1, 13), rng.randint(1, 32)
        mon = months[m - 1] if m <= 12 else "Foo"
        for text in (f"{m}/{d}/{y}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{d} {mon} {y}",
                     f"{mon} {d}, {y}", f"{d}-{mon}-{y}"):
            for dayfirst in (False, True):
                try:
                    expected = dateutil_parser.parse(text, dayfirst=dayfirst).date()
                except (ValueError, OverflowError):
                    expected = None
                try:
                    got = _parse_date(text, dayfirst)
                except TransformError:
                    got = None
                if isinstance(got, datetime):
                    got = got.date()
                assert got == expected, (text, dayfirst)


# ---- addresses -----------------------------------------------------------------------


def test_zip5():
    conv = t("zip5")
    assert conv("92103") == "92103"
    assert conv("92103-1234") == "92103"
    assert conv("92103 1234") == "92103"
    assert conv("921031234") == "92103"
    assert conv("2134") == "02134"
    assert conv(2134) == "02134"
    assert conv(92103.0) == "92103"
    assert conv(" ") is None
    for bad in ("921", "ABCDE", "92103-12", "SW1A 1AA", True):
        with pytest.raises(TransformError):
            conv(bad)


def test_state_abbrev():
    conv = t("state_abbrev")
    for raw in ("California", "california", "CA", "ca", " CA "):
        assert conv(raw) == "CA"
    assert conv("N.Y.") == "NY"
    assert conv("District of Columbia") == "DC"
    assert conv("Puerto Rico") == "PR"
    assert t("state_abbrev", {"to": "name"})("ca") == "California"
    assert t("state_abbrev", "name")("TX") == "Texas"
    assert conv("") is None
    with pytest.raises(TransformError, match="not a US state: 'Californa'"):
        conv("Californa")
    with pytest.raises(ValueError):
        get_transform("state_abbrev")({"to": "full"})


def test_address_part():
    text = "3568 Front St, San Diego, CA 92103"
    assert t("address_part", "street")(text) == "3568 Front St"
    assert t("address_part", "city")(text) == "San Diego"
    assert t("address_part", "state")(text) == "CA"
    assert t("address_part", {"part": "zip"})(text) == "92103"
    assert t("address_part", "street")("3568 Front St Apt 4B, San Diego, CA 92103-1234") == \
        "3568 Front St Apt 4B"
    assert t("address_part", "street")("San Diego, CA 92103") is None
    with pytest.raises(TransformError, match="could not read address"):
        t("address_part", "city")("garbage")
    with pytest.raises(ValueError, match="part must be one of street, city, state, zip"):
        get_transform("address_part")("county")
    with pytest.raises(ValueError):
        get_transform("address_part")(None)
