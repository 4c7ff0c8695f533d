"""How a restore moves a stored offset across holes in the archived log (cli/archive.py)."""

import pytest

from cli.archive import ArchiveError, Renumbering


def renumbering(*archived: int) -> Renumbering:
    moved = Renumbering()
    for restored, offset in enumerate(archived):
        moved.add(offset, restored)
    return moved


def test_an_offset_moves_to_the_restored_offset_of_the_same_record():
    moved = renumbering(0, 1, 2, 5, 6, 7)  # offsets 3-4: a hole
    assert [moved.position(p) for p in (0, 2, 5, 7)] == [0, 2, 3, 5]


def test_an_offset_in_a_hole_moves_to_the_first_record_after_it_and_one_past_the_end_to_the_new_end():
    moved = renumbering(0, 1, 2, 5, 6, 7)
    assert [moved.position(p) for p in (3, 4, 8, 9)] == [3, 3, 6, 6]
    assert Renumbering().position(12) == 0  # a partition with no archived records


@pytest.mark.parametrize("hostile", ["abc", -1, None, 2.5])
def test_an_archived_offset_that_is_not_one_is_refused(hostile):
    with pytest.raises(ArchiveError, match="not an offset"):
        renumbering(0, 1).add(hostile, 2)


def test_offsets_out_of_order_are_refused():
    with pytest.raises(ArchiveError, match="out of order"):
        renumbering(0, 5).add(3, 2)
