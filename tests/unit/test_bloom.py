"""The Bloom filter of digests: never a false "not added", few false "maybe", memory of a fixed size."""

import os

from shared.bloom import DIGEST_BYTES, BloomFilter, digest_of


def digests(n: int) -> list[bytes]:
    return [os.urandom(DIGEST_BYTES) for _ in range(n)]


def test_every_added_identity_may_have_been_seen():
    seen = BloomFilter(mib=1)
    added = digests(20_000)
    for start in range(0, len(added), 1000):  # as the rollup adds them: a stored batch at a time
        seen.add(b"".join(added[start:start + 1000]))
    assert all(seen.maybe_seen(added))


def test_identities_added_at_once_whose_bits_share_bytes_are_all_kept():
    seen = BloomFilter(mib=1)
    added = digests(200_000)  # 2M bit positions in 1M bytes: most bytes get several bits in one add
    seen.add(b"".join(added))
    assert all(seen.maybe_seen(added))


def test_new_identities_are_mostly_ruled_out_at_once():
    seen = BloomFilter(mib=1)  # 8 Mi bits for 100k identities: about 1 in 10^9 wrongly "maybe"
    seen.add(b"".join(digests(100_000)))
    assert sum(seen.maybe_seen(digests(50_000))) <= 5


def test_memory_does_not_grow_with_what_is_added():
    seen = BloomFilter(mib=1)
    size = seen.bits.nbytes
    for _ in range(10):
        seen.add(b"".join(digests(10_000)))
    assert seen.bits.nbytes == size == 1024 * 1024


def test_an_empty_batch_is_nothing_to_add_or_test():
    seen = BloomFilter(mib=1)
    seen.add(b"")
    assert seen.maybe_seen([]) == [] and not seen.bits.any()


def test_a_text_digests_to_the_filters_size_and_apart_from_others():
    assert len(digest_of("a")) == DIGEST_BYTES and digest_of("a") != digest_of("b")
