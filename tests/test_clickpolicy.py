"""The click policy (strict | drop-outside | lenient): outside clicks, conflicts, the budget, repeats."""

from __future__ import annotations

import logging

import pytest

from petclick.core.errors import InputError
from petclick.io.clickpolicy import BUDGET, ClickPolicy, apply_click_policy
from petclick.io.clickset import Clicks

SHAPE = (8, 9, 10)
SOURCE = "case_clicks.json"


def test_policy_names_and_flags():
    assert ClickPolicy.parse(None) is ClickPolicy.STRICT
    assert ClickPolicy.parse("drop-outside") is ClickPolicy.DROP_OUTSIDE
    assert ClickPolicy.parse(ClickPolicy.LENIENT) is ClickPolicy.LENIENT
    assert ClickPolicy.from_flags(drop_outside=True) is ClickPolicy.DROP_OUTSIDE
    assert ClickPolicy.from_flags() is ClickPolicy.STRICT
    with pytest.raises(InputError, match="unknown click policy 'loose'"):
        ClickPolicy.parse("loose")


def test_valid_clicks_pass_unchanged_under_every_policy():
    clicks = Clicks([(0, 0, 0), (7, 8, 9)], [(3, 3, 3)])
    for policy in ClickPolicy:
        drops = []
        out = apply_click_policy(clicks, SHAPE, SOURCE, policy, drops=drops)
        assert out == clicks and drops == []


@pytest.mark.parametrize("point", [(8, 0, 0), (0, 9, 0), (0, 0, 10), (-1, 0, 0), (0, 0, -5)])
def test_strict_names_file_and_click_outside(point):
    clicks = Clicks([(1, 1, 1), point], [])
    with pytest.raises(InputError) as err:
        apply_click_policy(clicks, SHAPE, SOURCE, "strict")
    msg = str(err.value)
    assert msg == f"{SOURCE}: click tumor[1] {list(point)} lies outside the volume of shape {SHAPE}"


@pytest.mark.parametrize("policy", [ClickPolicy.DROP_OUTSIDE, ClickPolicy.LENIENT])
def test_outside_clicks_dropped_with_a_warning_listing_each(policy, caplog):
    clicks = Clicks([(1, 1, 1), (8, 0, 0), (2, 2, 2)], [(0, 0, 10), (4, 4, 4)])
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, policy, drops=drops)
    assert out.tumor == [(1, 1, 1), (2, 2, 2)] and out.background == [(4, 4, 4)]
    assert [(d.entry, d.click) for d in drops] == [("tumor[1]", [8, 0, 0]), ("background[0]", [0, 0, 10])]
    assert (f"{SOURCE}: 2 click(s) outside the volume of shape {SHAPE} dropped: tumor[1] [8, 0, 0]; "
            "background[0] [0, 0, 10]") in caplog.text      # one warning listing each
    assert out.label("tumor", 1) == "tumor[2]"          # kept clicks still name their file entry


def test_without_shape_only_negative_indices_are_outside():
    assert apply_click_policy(Clicks([(500, 0, 0)], []), None, SOURCE).tumor == [(500, 0, 0)]
    with pytest.raises(InputError, match="negative index"):
        apply_click_policy(Clicks([(5, -1, 0)], []), None, SOURCE)


def test_budget_strict_and_drop_outside_refuse_lenient_keeps_first_ten(caplog):
    tumour = [(i % 8, 0, 0) for i in range(BUDGET + 3)]
    clicks = Clicks(tumour, [(0, 5, 5)])
    for policy in ("strict", "drop-outside"):
        with pytest.raises(InputError, match=r"13 tumor clicks exceed the budget of 10 \(first one over it: tumor\[10\]"):
            apply_click_policy(clicks, SHAPE, SOURCE, policy)
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert out.tumor == tumour[:BUDGET] and out.background == [(0, 5, 5)]
    assert len(drops) == 1 and "the first 10 are kept" in drops[0].reason and "exceed the budget" in caplog.text


def test_budget_counts_only_clicks_inside_the_volume():
    """Drop-outside first drops outside clicks, then checks the budget on what is left."""
    clicks = Clicks([(1, 1, 1)] * 10 + [(99, 0, 0)], [])
    assert len(apply_click_policy(clicks, SHAPE, SOURCE, "drop-outside").tumor) == 10


def test_budget_none_means_no_limit():
    clicks = Clicks([(1, 1, 1)] * 50, [])
    assert len(apply_click_policy(clicks, SHAPE, SOURCE, "strict", budget=None).tumor) == 50


def test_repeated_clicks_of_one_kind_are_kept_as_given():
    """The official simulation repeats boundary clicks on small lesions: repeats are legitimate."""
    clicks = Clicks([(1, 1, 1), (1, 1, 1), (1, 1, 1)], [(2, 2, 2), (2, 2, 2)])
    for policy in ClickPolicy:
        assert apply_click_policy(clicks, SHAPE, SOURCE, policy) == clicks


def test_one_voxel_as_both_kinds():
    clicks = Clicks([(1, 1, 1), (3, 3, 3)], [(5, 5, 5), (3, 3, 3)])
    for policy in ("strict", "drop-outside"):
        with pytest.raises(InputError, match=r"background\[1\] \[3, 3, 3\]: background click on the voxel of tumour click tumor\[1\]"):
            apply_click_policy(clicks, SHAPE, SOURCE, policy)
    drops = []
    out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert out.tumor == [(1, 1, 1), (3, 3, 3)] and out.background == [(5, 5, 5)]
    assert drops[0].entry == "background[1]"


def test_many_outside_clicks_are_listed_in_one_warning(caplog):
    clicks = Clicks([(100, 0, 0)] * 40, [])
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert len(out) == 0 and len(drops) == 40
    assert caplog.text.count("tumor[") == 40 and len(caplog.records) == 1   # one line lists them all


def test_many_bad_entries_are_counted_not_all_logged(tmp_path, caplog):
    from petclick.io.clickfile import read_clicks

    path = tmp_path / "c.json"
    path.write_text('{"tumor": [' + ", ".join(['["x", 1, 1]'] * 40) + "]}")
    drops = []
    with caplog.at_level(logging.WARNING):
        assert len(read_clicks(path, SHAPE, policy="lenient", drops=drops)) == 0
    assert len(drops) == 40 and caplog.text.count("dropped tumor[") == 25
    assert "15 more click entries dropped (40 in all)" in caplog.text
