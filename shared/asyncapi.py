"""AsyncAPI documents of the services' topics, made by FastStream from the brokers' subscribers
and from publishers declared here for what each service sends, with the CloudEvent envelope and
the catalogue's payload models of each topic as the message schema."""

import json
from functools import cache
from typing import Any, Literal, Union

from fastapi import APIRouter
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field, create_model

from shared.catalog import DEAD_LETTER, EVENT_TYPES, Topic
from shared.envelope import CloudEvent
from shared.settings import KafkaSettings


@cache
def envelope_of(topic: Topic) -> type[BaseModel]:
    """The CloudEvent schema of one topic: its event types and their payloads."""
    types = [e for e in EVENT_TYPES if e.topic == topic]
    name = "".join(part.capitalize() for part in topic.name.split(".")[1:]) + "Event"
    if not types:  # the dead-letter topic keeps whatever was refused, as it came
        return create_model(name, __doc__=topic.description)
    return create_model(  # the envelope's attributes as parse_event checks them
        name,
        __base__=CloudEvent,
        __doc__=topic.description,
        # Literal and Union built at runtime: valid to pydantic, opaque to mypy
        type=(Literal[tuple(e.type for e in types)], ...),  # type: ignore[arg-type]
        data=(Union[tuple(e.model for e in types)], Field(  # type: ignore[arg-type]  # noqa: UP007 -- no X | Y form for a tuple
            description="the payload model named by `type`")),
    )


def declare_publishers(broker: KafkaBroker, settings: KafkaSettings, service: str, topics: tuple[Topic, ...]) -> None:
    """Register what the service sends, for the document; every service may dead-letter."""
    for topic in (*topics, DEAD_LETTER):
        broker.publisher(settings.topic(topic.name), title=f"{service}:publish:{topic.name}",
                         description=topic.description, schema=envelope_of(topic))


def document(broker: KafkaBroker, service: str, description: str) -> dict[str, Any]:
    spec = AsyncAPI(broker, title=f"Backbone {service} service", version="1.0", description=description,
                    schema_version="3.0.0")
    return json.loads(spec.to_specification().to_json())


def asyncapi_router(broker: KafkaBroker, service: str, description: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/asyncapi.json", summary="The AsyncAPI 3.0 document of this service's topics")
    async def asyncapi() -> dict[str, Any]:
        return document(broker, service, description)

    return router
