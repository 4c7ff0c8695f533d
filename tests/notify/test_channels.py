"""The webhook channel refuses targets inside the network unless told otherwise."""

import asyncio

import pytest

from services.notify.channels import SendFailed, Webhooks


@pytest.fixture
async def listener():
    """A real loopback TCP server that counts the connections it gets and answers 204."""
    connections = []

    async def answer(reader, writer):
        connections.append(1)
        await reader.read(65536)
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connections
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]"])
async def test_private_targets_are_refused_without_a_connection(host, listener):
    port, connections = listener
    webhooks = Webhooks(timeout_seconds=1.0)
    with pytest.raises(SendFailed, match="address not allowed"):
        await webhooks.send(f"http://{host}:{port}/hook", "whsec_c2VjcmV0", "ev-1", b"{}")
    await webhooks.close()
    assert connections == []


async def test_private_targets_are_reached_when_allowed(listener):
    port, connections = listener
    webhooks = Webhooks(timeout_seconds=1.0, allow_private_networks=True)
    await webhooks.send(f"http://127.0.0.1:{port}/hook", "whsec_c2VjcmV0", "ev-1", b"{}")
    await webhooks.close()
    assert connections == [1]
