"""shared.mongo on the real database: find_among finds every matching document once, however the
values are sliced and however many slices are asked at once; create_collections and mark_multikey
may run on several replicas at once and again."""

import asyncio

import pytest

from shared.mongo import SLICES_AT_ONCE, create_collections, find_among, make_client, mark_multikey

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("slice_size", [7, 50, 1000])
async def test_find_among_finds_each_match_once_across_slices(mongo_settings, slice_size):
    client = make_client(mongo_settings)
    try:
        collection = client[mongo_settings.database_prefix + "mongo"]["things"]
        await collection.insert_many([{"_id": f"t-{n}", "even": n % 2 == 0, "n": n} for n in range(300)])
        values = [f"t-{n}" for n in range(0, 400, 3)]  # 134 values, 100 of them stored: 20 slices of 7
        assert len(values) > SLICES_AT_ONCE * 7
        found = await find_among(collection, "_id", values, {"even": True}, {"n": 1}, slice_size=slice_size)
        assert sorted(doc["n"] for doc in found) == [n for n in range(0, 300, 3) if n % 2 == 0]
        assert all(set(doc) == {"_id", "n"} for doc in found)
    finally:
        await client.close()


async def test_collections_are_created_once_by_replicas_starting_together_and_again(mongo_settings):
    client = make_client(mongo_settings)
    try:
        db = client[mongo_settings.database_prefix + "mongo"]
        await db["kept"].insert_one({"_id": 1})
        await asyncio.gather(*(create_collections(db, ["kept", "hires", "activities"]) for _ in range(3)))
        await create_collections(db, ["hires"])
        assert set(await db.list_collection_names()) == {"kept", "hires", "activities"}
        assert await db["kept"].count_documents({}) == 1
    finally:
        await client.close()


async def test_indexes_are_flagged_multikey_by_replicas_starting_together_leaving_nothing(mongo_settings):
    client = make_client(mongo_settings)
    try:
        records = client[mongo_settings.database_prefix + "mongo"]["records"]
        await records.create_index("identities", unique=True)
        await records.create_index([("partnership_id", 1), ("ids", 1)])
        await records.create_index("hires.key")  # a field of sub-documents in an array
        await asyncio.gather(*(mark_multikey(records, ["identities", "ids", "hires.key"]) for _ in range(3)))
        assert await records.count_documents({}) == 0
        for field in ("identities", "hires.key"):
            assert "isMultiKey': True" in str(await records.find({field: "x"}).explain()), field
    finally:
        await client.close()
