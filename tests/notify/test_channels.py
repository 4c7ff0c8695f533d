"""The webhook channel refuses targets inside the network at every attempt; the one exception
(loopback, for tests' local receivers) is narrow and off by default."""

import asyncio

import pytest

from services.notify.channels import SendFailed, Webhooks, WebhookTargets

HTTP_ALLOWED = WebhookTargets(require_https=False)


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


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]", "2130706433"])
async def test_private_targets_are_refused_without_a_connection(host, listener):
    port, connections = listener
    webhooks = Webhooks(1.0, HTTP_ALLOWED)
    with pytest.raises(SendFailed, match="address not allowed"):
        await webhooks.send(f"http://{host}:{port}/hook", "whsec_c2VjcmV0", "ev-1", b"{}")
    await webhooks.close()
    assert connections == []


async def test_loopback_targets_are_reached_when_allowed(listener):
    port, connections = listener
    webhooks = Webhooks(1.0, WebhookTargets(require_https=False, allow_loopback=True))
    await webhooks.send(f"http://127.0.0.1:{port}/hook", "whsec_c2VjcmV0", "ev-1", b"{}")
    await webhooks.close()
    assert connections == [1]


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::ffff:127.0.0.1]/",
                                 "http://0.0.0.0/", "http://user:pw@localhost/hook"])
async def test_allowing_loopback_allows_nothing_else(url):
    assert await WebhookTargets(require_https=False, allow_loopback=True).refusal(url)


async def test_names_are_resolved_and_plain_http_is_refused_unless_allowed():
    assert "loopback address (127.0.0.1)" in await HTTP_ALLOWED.refusal("http://localhost:8080/hook")
    assert await WebhookTargets().refusal("http://93.184.215.14/hook") == "must be an https URL"
    assert await WebhookTargets().refusal("https://93.184.215.14/hook") is None
    assert await WebhookTargets().refusal("https://no-such-host.invalid/hook") == "host not found"
