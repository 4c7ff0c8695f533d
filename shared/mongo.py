"""MongoDB through PyMongo's native async client (MongoDB's successor to the deprecated motor)."""

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from shared.settings import MongoSettings


def duplicate_key(exc: BaseException) -> bool:
    """A write refused by a unique index: alone, or among a bulk write's errors."""
    return isinstance(exc, DuplicateKeyError) or (
        isinstance(exc, BulkWriteError) and any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ())))


def make_client(settings: MongoSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.uri.get_secret_value(),
        retryWrites=settings.retry_writes,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
    )


NAMESPACE_EXISTS = 48


async def create_collections(db: AsyncDatabase, names: Iterable[str]) -> None:
    """Collections written in transactions, created before any is. A collection created by a
    transaction's first write makes every other transaction writing it fail with a write
    conflict until that one ends, and a replica killed mid-transaction ends it only when the
    server reaps it (SecantusDB: after 60 s)."""
    for name in names:
        try:
            await db.create_collection(name, check_exists=False)
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:  # made by an earlier start, or another replica: fine
                raise


async def mark_multikey(collection: AsyncCollection, fields: Iterable[str]) -> None:
    """Flag the indexes of these array fields multikey before a transaction writes an array there.
    The first array written to an indexed field flags its index in the index catalogue; inside a
    transaction that write conflicts with every other transaction writing the collection until it
    ends (for a replica killed mid-transaction: until the server reaps it, 60 s on SecantusDB).
    The flag stays once set (as on MongoDB), so a document written and deleted at setup does it.
    A dotted field ("hires.key") is an array of sub-documents: the array is its first part."""
    marker = f"\x00multikey-{uuid.uuid4().hex}"  # unique per call: replicas starting at once, unique indexes
    doc: dict[str, Any] = {"_id": marker}
    for field in fields:
        array, _, inner = field.partition(".")
        doc[array] = [{inner: marker} if inner else marker]
    await collection.insert_one(doc)
    await collection.delete_one({"_id": marker})


# The local server (SecantusDB) answers an `$in` list in time quadratic in the documents it
# finds: 1,000 found _ids took 1.1-1.5 s in one query, 0.2 s in slices of 50 (bench/README.md).
IN_SLICE = 50
# Slices asked at once: their round trips overlap (10 slices of 500 ids none found: ~22 ms one
# after another), and a long list still does not open a connection per slice.
SLICES_AT_ONCE = 4


async def find_among(collection: AsyncCollection, field: str, values: Iterable[Any], query: dict | None = None,
                     projection: dict | None = None, slice_size: int = IN_SLICE) -> list[dict]:
    """Documents of `collection` matching `query` whose `field` is one of `values`, asked
    `slice_size` values at a time (in no particular order). A larger slice suits an index where
    each document found holds many of the values (a multikey index of arrays). By `_id`, ask with
    no `query` and check its fields on what is found: the local server takes its primary-key path
    only for a query on `_id` alone, and may otherwise plan on another index and read all it holds
    (17 s a group of 500 held events asked with their status, bench/held.py)."""
    wanted, found = list(values), []
    starts = range(0, len(wanted), slice_size)
    for first in range(0, len(starts), SLICES_AT_ONCE):
        for part in await asyncio.gather(*(
                collection.find({**(query or {}), field: {"$in": wanted[start:start + slice_size]}},
                                projection).to_list() for start in starts[first:first + SLICES_AT_ONCE])):
            found += part
    return found
