"""Click-file parsing: every malformed input of issue 19 has its own message (strict) or is dropped
alone with a warning (lenient), and never crashes or vanishes."""

from __future__ import annotations

import json
import logging

import pytest

from petclick.core.errors import InputError
from petclick.io.clickfile import MAX_CLICK_FILE_BYTES, Clicks, read_click_file, read_clicks, write_clicks

SHAPE = (20, 20, 20)
GOOD = [[1, 2, 3], [4, 5, 6]]


def gc_file(points, **extra):
    return {"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": points, **extra}


def pts(*items):
    return [{"point": p, "name": n} for p, n in items]


def write(tmp_path, payload, name="c.json"):
    path = tmp_path / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


# (file text, message of the strict error): each a finding of issue 19.
BAD_ENTRIES = [
    ('{"tumor": [[1, 2, 3], [NaN, 2, 3]]}', "tumor[1] [NaN, 2, 3]: coordinate 0 (i) is NaN, not a finite number"),
    ('{"tumor": [[1, 2, 3], [1, -Infinity, 3]]}', "coordinate 1 (j) is -Infinity, not a finite number"),
    ('{"tumor": [[1, 2, 3], [1, 2, Infinity]]}', "coordinate 2 (k) is Infinity"),
    ('{"tumor": [[1, 2, 3], [1, 2, 1e999]]}', "coordinate 2 (k) is 1e999, not a finite number"),
    ('{"tumor": [[1, 2, 3], [1, 2, 1234567890123456789012]]}', "1234567890123456789012, not a finite number"),
    ('{"tumor": [[1, 2, 3], ["4", 5, 6]]}', "tumor[1] ['4', 5, 6]: coordinate 0 (i) is a string ('4'), not a number"),
    ('{"tumor": [[1, 2, 3], [true, 5, 6]]}', "coordinate 0 (i) is a boolean (true), not a voxel index"),
    ('{"tumor": [[1, 2, 3], [null, 5, 6]]}', "coordinate 0 (i) is null, not a voxel index"),
    ('{"tumor": [[1, 2, 3], [4, [5], 6]]}', "coordinate 1 (j) is a list, not a number"),
    ('{"tumor": [[1, 2, 3], [4, 5]]}', "tumor[1] [4, 5]: has 2 coordinates; a click has 3 (i, j, k)"),
    ('{"tumor": [[1, 2, 3], [4, 5, 6, 7]]}', "has 4 coordinates; a click has 3"),
    ('{"tumor": [[1, 2, 3], 4]}', "a click must be a list of 3 voxel indices [i, j, k], got int"),
    ('{"tumor": [[1, 2, 3], [4.5, 5, 6]]}', "coordinate 0 (i) is fractional (4.5); voxel indices are integers"),
    ('{"tumor": [[1, 2, 3]], "background": null}', "key 'background': must be a list of [i, j, k] clicks, got null"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], "lesion")))),
     "points[1] [4, 5, 6]: unknown name 'lesion'; expected 'tumor' or 'background'"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], "tumor ")))),
     "points[1] [4, 5, 6]: name 'tumor ' has spaces around it; expected exactly 'tumor'"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], "Background")))),
     "name 'Background' must be lower-case 'background'"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], 1)))), "points[1] [4, 5, 6]: name is int, not 'tumor'"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], None)))), "name is null"),
    (json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, "5", 6], "tumor")))), "points[1] [4, '5', 6]: coordinate 1 (j) is a string"),
    (json.dumps(gc_file([{"point": [1, 2, 3], "name": "tumor"}, "oops"])), "points[1]: must be an object with 'point' and 'name', got a string"),
    (json.dumps(gc_file([{"point": [1, 2, 3], "name": "tumor"}, {"name": "tumor"}])), "must be an object with 'point' and 'name', got ['name']"),
    ('{"points": [{"point": [1, 2, 3], "name": "tumor"}, {"point": [1, 2, 3], "point": [4, 5, 6], "name": "tumor"}]}',
     "points[1]: repeats the key(s) ['point'], so the click is ambiguous"),
]


@pytest.mark.parametrize("text, message", BAD_ENTRIES)
def test_bad_entry_strict_error_names_file_entry_and_problem(tmp_path, text, message):
    path = write(tmp_path, text, "bad_clicks.json")
    with pytest.raises(InputError) as err:
        read_clicks(path, SHAPE)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


@pytest.mark.parametrize("text, message", BAD_ENTRIES)
def test_bad_entry_lenient_keeps_every_good_click(tmp_path, text, message, caplog):
    """Lenient (the container) drops only the bad entry, logs it, and keeps the good click."""
    path = write(tmp_path, text)
    drops = []
    with caplog.at_level(logging.WARNING):
        clicks = read_clicks(path, SHAPE, policy="lenient", drops=drops)
    assert clicks.tumor == [(1, 2, 3)] and clicks.background == []
    assert len(drops) == 1 and f"dropped {drops[0].entry}" in caplog.text
    with pytest.raises(InputError) as err:                # the warning gives the strict error's reason
        read_clicks(path, SHAPE)
    assert str(err.value).endswith(f"{drops[0].entry}{'' if drops[0].click is None else ' ' + str(drops[0].click)}: "
                                   f"{drops[0].reason}")


def test_nineteen_good_clicks_survive_one_bad_one_in_lenient(tmp_path):
    points = pts(*[([i % 20, 1, 1], "tumor") for i in range(10)], *[([i % 20, 2, 2], "background") for i in range(9)])
    points.insert(7, {"point": ["x", 1, 1], "name": "tumor"})
    clicks = read_clicks(write(tmp_path, gc_file(points)), SHAPE, policy="lenient")
    assert len(clicks.tumor) == 10 and len(clicks.background) == 9
    assert clicks.label("tumor", 7) == "points[8]"        # file entries keep their names


def test_duplicate_keys_strict_error_lenient_joined(tmp_path, caplog):
    text = '{"tumor": [[1, 2, 3]], "background": [[9, 9, 9]], "tumor": []}'
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=r"key 'tumor': appears 2 times \(a JSON reader keeps only the last"):
        read_clicks(path, SHAPE)
    with caplog.at_level(logging.WARNING):
        clicks = read_clicks(path, SHAPE, policy="lenient")
    assert clicks.tumor == [(1, 2, 3)] and clicks.background == [(9, 9, 9)]
    assert "joined in file order" in caplog.text
    text = '{"points": [{"point": [1, 2, 3], "name": "tumor"}], "points": [{"point": [4, 5, 6], "name": "background"}]}'
    clicks = read_clicks(write(tmp_path, text), SHAPE, policy="lenient")
    assert clicks.tumor == [(1, 2, 3)] and clicks.background == [(4, 5, 6)]
    assert clicks.label("background", 0) == "points[1]"


def test_repeated_metadata_key_is_reported_too(tmp_path):
    text = '{"version": {"major": 1, "minor": 0}, "type": "Multiple points", "type": "x", "points": []}'
    path = write(tmp_path, text)
    with pytest.raises(InputError, match="key 'type': appears 2 times"):
        read_clicks(path, SHAPE)
    drops = []
    assert len(read_clicks(path, SHAPE, policy="lenient", drops=drops)) == 0 and len(drops) == 1


def test_unknown_key_beside_known_ones(tmp_path, caplog):
    path = write(tmp_path, gc_file(pts(([1, 2, 3], "tumor")), tumor=[[4, 5, 6]]))
    with pytest.raises(InputError, match="key 'tumor': unknown key beside 'points' in a grand-challenge file"):
        read_clicks(path, SHAPE)
    with caplog.at_level(logging.WARNING):
        assert read_clicks(path, SHAPE, policy="lenient").tumor == [(1, 2, 3)]
    assert "unknown key beside 'points'" in caplog.text and "ignored" in caplog.text
    path = write(tmp_path, {"tumor": [[1, 2, 3]], "lesions": [[1, 1, 1]]})
    with pytest.raises(InputError, match="key 'lesions': unknown key in a plain click file"):
        read_clicks(path, SHAPE)
    path = write(tmp_path, gc_file([{"point": [1, 2, 3], "name": "tumor", "colour": "red"}]))
    with pytest.raises(InputError, match=r"points\[0\]: unknown key\(s\) \['colour'\] in a point"):
        read_clicks(path, SHAPE)
    assert read_clicks(path, SHAPE, policy="lenient").tumor == [(1, 2, 3)]


def test_grand_challenge_optional_fields_are_accepted(tmp_path):
    payload = gc_file([{"point": [1, 2, 3], "name": "tumor", "probability": 1.0}], name="Lesion clicks")
    assert read_clicks(write(tmp_path, payload), SHAPE).tumor == [(1, 2, 3)]
    with pytest.raises(InputError, match="key 'type': is 'Single point', expected 'Multiple points'"):
        read_clicks(write(tmp_path, {**payload, "type": "Single point"}), SHAPE)


@pytest.mark.parametrize("text, meaning", [("", "the file is empty"), ("  \n", "the file is empty"),
                                           ("null", "the file holds null"), ("[]", "the file holds []"),
                                           ("{}", "the file holds {}")])
def test_empty_looking_files_mean_no_clicks_and_say_so(tmp_path, caplog, text, meaning):
    for policy in ("strict", "lenient"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            clicks = read_clicks(write(tmp_path, text), SHAPE, policy=policy)
        assert len(clicks) == 0 and f"{meaning}: no clicks (step 0)" in caplog.text


def test_explicitly_empty_lists_are_silent_no_clicks(tmp_path, caplog):
    for payload in ({"tumor": [], "background": []}, gc_file([])):
        with caplog.at_level(logging.WARNING):
            assert len(read_clicks(write(tmp_path, payload), SHAPE)) == 0
    assert caplog.text == ""


@pytest.mark.parametrize("text, message", [
    ("[[1, 2, 3]]", "must hold a JSON object, got a list"), ("5", "must hold a JSON object, got int"),
    ('"tumor"', "got a string"), ("{not json", "malformed JSON"), ('{"tumor": [[1, 2, 3]]', "malformed JSON"),
    ('{"lesions": []}', "unknown click-file schema"), ('{"version": {"major": 1}}', "without 'points'"),
])
def test_unreadable_files_are_errors_in_every_policy(tmp_path, text, message):
    for policy in ("strict", "drop-outside", "lenient"):
        with pytest.raises(InputError, match=message):
            read_clicks(write(tmp_path, text), SHAPE, policy=policy)


def test_points_not_a_list_strict_error_lenient_dropped(tmp_path):
    path = write(tmp_path, '{"points": {"a": 1}}')
    with pytest.raises(InputError, match="key 'points': must be a list of point objects, got an object"):
        read_clicks(path, SHAPE, policy="drop-outside")
    drops = []
    assert len(read_clicks(path, SHAPE, policy="lenient", drops=drops)) == 0 and drops[0].entry == "key 'points'"


def test_recursion_bomb_is_an_input_error(tmp_path):
    for bomb in ("[" * 100_000, '{"tumor": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        with pytest.raises(InputError, match="nested too deeply"):
            read_clicks(write(tmp_path, bomb), SHAPE, policy="lenient")


def test_size_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"tumor": [' + ", ".join(["[1, 2, 3]"] * 120_000) + "]}")
    assert path.stat().st_size > MAX_CLICK_FILE_BYTES
    with pytest.raises(InputError, match=r"click file is [\d,]+ bytes, over the limit of 1,048,576 bytes"):
        read_clicks(path, SHAPE, policy="lenient")


@pytest.mark.parametrize("codec, bom, note", [
    ("utf-8", b"\xef\xbb\xbf", "UTF-8 byte-order mark (ignored)"),
    ("utf-16-le", b"\xff\xfe", "UTF-16 text with a byte-order mark"),
    ("utf-16-be", b"\xfe\xff", "UTF-16 text with a byte-order mark"),
    ("utf-16-le", b"", "UTF-16-LE text without a byte-order mark"),
    ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32 text with a byte-order mark"),
])
def test_bom_and_utf16_are_decoded_with_a_warning(tmp_path, caplog, codec, bom, note):
    text = json.dumps(gc_file(pts(([1, 2, 3], "tumor"), ([4, 5, 6], "background"))))
    path = write(tmp_path, bom + text.encode(codec))
    with caplog.at_level(logging.WARNING):
        clicks = read_clicks(path, SHAPE)
    assert clicks.tumor == [(1, 2, 3)] and clicks.background == [(4, 5, 6)]
    assert note in caplog.text


def test_invalid_bytes_name_the_offset(tmp_path):
    path = write(tmp_path, b'{"tumor": [[1, 2, 3]], "x\xff": 1}')
    with pytest.raises(InputError, match=r"is not valid UTF-8 text \(invalid start byte: byte 0xff at offset 25\)"):
        read_clicks(path, SHAPE)


def test_integer_valued_floats_and_large_ints_in_range(tmp_path):
    path = write(tmp_path, {"tumor": [[1.0, 2.0, 3e0]], "background": [[19, 19, 19]]})
    assert read_clicks(path, SHAPE).tumor == [(1, 2, 3)]
    path = write(tmp_path, {"tumor": [[10 ** 15, 0, 0]]})
    with pytest.raises(InputError, match="outside the volume"):
        read_clicks(path, SHAPE)


def test_budget_is_ten_by_default_everywhere(tmp_path):
    path = write_clicks(tmp_path / "c.json", Clicks([(1, 1, 1)] * 11, []))
    with pytest.raises(InputError, match="11 tumor clicks exceed the budget of 10"):
        read_clicks(path, SHAPE)
    assert len(read_clicks(path, SHAPE, policy="lenient").tumor) == 10
    assert len(read_click_file(path).tumor) == 11          # parsing alone keeps the file as written


def test_write_clicks_round_trips_and_leaves_no_temp_files(tmp_path):
    clicks = Clicks([(1, 2, 3)], [(4, 5, 6)])
    for fmt in ("plain", "gc"):
        path = write_clicks(tmp_path / f"c_{fmt}.json", clicks, fmt)
        assert read_clicks(path, SHAPE) == clicks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c_gc.json", "c_plain.json"]
