"""The rollup's identities: digests, found among stored ones, the recent ones kept exactly."""

import os

from services.metrics.dedupe import RecentIdentities, among, digest
from shared.bloom import DIGEST_BYTES


def digests(n: int) -> list[bytes]:
    return [os.urandom(DIGEST_BYTES) for _ in range(n)]


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
