"""The rollup's seen filter: never a false "not seen", few false "maybe", memory of a fixed size."""

import os

from services.metrics.dedupe import DIGEST_BYTES, RecentIdentities, SeenFilter, among, digest


def digests(n: int) -> list[bytes]:
    return [os.urandom(DIGEST_BYTES) for _ in range(n)]


def test_every_added_identity_may_have_been_seen():
    seen = SeenFilter(mib=1)
    added = digests(20_000)
    for start in range(0, len(added), 1000):  # as the rollup adds them: a stored batch at a time
        seen.add(b"".join(added[start:start + 1000]))
    assert all(seen.maybe_seen(added))


def test_identities_added_at_once_whose_bits_share_bytes_are_all_kept():
    seen = SeenFilter(mib=1)
    added = digests(200_000)  # 2M bit positions in 1M bytes: most bytes get several bits in one add
    seen.add(b"".join(added))
    assert all(seen.maybe_seen(added))


def test_new_identities_are_mostly_ruled_out_at_once():
    seen = SeenFilter(mib=1)  # 8 Mi bits for 100k identities: about 1 in 10^9 wrongly "maybe"
    seen.add(b"".join(digests(100_000)))
    assert sum(seen.maybe_seen(digests(50_000))) <= 5


def test_memory_does_not_grow_with_what_is_added():
    seen = SeenFilter(mib=1)
    size = seen.bits.nbytes
    for _ in range(10):
        seen.add(b"".join(digests(10_000)))
    assert seen.bits.nbytes == size == 1024 * 1024


def test_an_empty_batch_is_nothing_to_add_or_test():
    seen = SeenFilter(mib=1)
    seen.add(b"")
    assert seen.maybe_seen([]) == [] and not seen.bits.any()


def test_among_finds_exactly_the_stored_digests_whatever_their_bytes():
    stored = digests(1000) + [b"\x00" * DIGEST_BYTES, b"ab" + b"\x00" * (DIGEST_BYTES - 2)]  # trailing zero bytes kept
    wanted = {stored[3], stored[-1], stored[-2], *digests(5)}
    assert among(b"".join(stored), wanted) == {stored[3], stored[-1], stored[-2]}
    assert among(b"", wanted) == set() and among(b"".join(stored), set()) == set()


def test_an_identity_is_its_source_and_id():
    assert digest("/ats/a", "1") != digest("/ats/b", "1")
    assert digest("/a", "b c") != digest("/a b", "c")  # the source's length keeps them apart
    assert len(digest("/a", "1")) == DIGEST_BYTES


def test_recent_identities_are_the_last_ones_exactly_and_no_more():
    recent = RecentIdentities(capacity=1000)
    first, later = digests(600), digests(600)
    recent.add(first)
    recent.add(later + first[:10])  # a copy added again takes no second place
    assert all(d in recent for d in later) and not any(d in recent for d in first[:200])
    assert len(recent.held) == len(recent.order) == 1000
    recent.clear()
    assert later[0] not in recent
