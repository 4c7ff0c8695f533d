"""MongoDB through PyMongo's native async client (MongoDB's successor to the deprecated motor)."""

from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from shared.settings import MongoSettings


def make_client(settings: MongoSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.uri.get_secret_value(),
        retryWrites=settings.retry_writes,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
    )


# The local server (SecantusDB) answers an `$in` list in time quadratic in the documents it
# finds: 1,000 found _ids took 1.1-1.5 s in one query, 0.2 s in slices of 50 (bench/README.md).
IN_SLICE = 50


async def find_among(collection: AsyncCollection, field: str, values: Iterable[Any], query: dict | None = None,
                     projection: dict | None = None) -> list[dict]:
    """Documents of `collection` matching `query` whose `field` is one of `values`, asked
    IN_SLICE values at a time (in no particular order)."""
    wanted, found = list(values), []
    for start in range(0, len(wanted), IN_SLICE):
        found += await collection.find({**(query or {}), field: {"$in": wanted[start:start + IN_SLICE]}},
                                       projection).to_list()
    return found
