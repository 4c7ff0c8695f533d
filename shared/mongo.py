"""MongoDB through PyMongo's native async client (MongoDB's successor to the deprecated motor)."""

from pymongo import AsyncMongoClient

from shared.settings import MongoSettings


def make_client(settings: MongoSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.uri.get_secret_value(),
        retryWrites=settings.retry_writes,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
    )
