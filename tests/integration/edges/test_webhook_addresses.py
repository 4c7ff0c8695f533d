"""Webhook URLs that would reach the deployment's own network, or that carry credentials, are
refused when they are subscribed (422 naming `webhook_url`), by the real notify process with its
production settings: https only, no loopback exception."""

import httpx
import pytest

pytestmark = pytest.mark.integration

OPERATOR = "webhook-addresses-operator-key"

REFUSED = [
    "https://127.0.0.1/hook",
    "https://2130706433/hook",  # decimal
    "https://0x7f000001/hook",  # hex
    "https://0177.0.0.1/hook",  # octal
    "https://127.1/hook",  # short
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://localhost/hook",  # a name that resolves to loopback
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata, link-local
    "https://0.0.0.0/hook",
    "https://[::]/hook",
    "https://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://224.0.0.1/hook",  # multicast
    "https://240.0.0.1/hook",  # reserved
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "http://93.184.215.14/hook",  # plain http
    "https://partner:s3cret@93.184.215.14/hook",  # credentials
    "https://token@93.184.215.14/hook",
]


async def test_webhook_urls_inside_the_network_or_with_credentials_are_refused_at_creation(start_service):
    service = start_service("notify", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    async with httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {OPERATOR}"},
                                 timeout=10) as api:
        for url in REFUSED:
            answer = await api.post("/subscriptions", json={"partnership_ids": ["sw-mp"], "channel": "webhook",
                                                            "webhook_url": url})
            assert answer.status_code == 422, f"{url}: {answer.status_code} {answer.text}"
            assert [e["loc"] for e in answer.json()["detail"]] == [["body", "webhook_url"]], url
            assert "s3cret" not in answer.text
        assert (await api.get("/subscriptions")).json() == []  # nothing was stored

        # A public address is accepted (a literal, so the test needs no DNS).
        public = await api.post("/subscriptions", json={"partnership_ids": ["sw-mp"], "channel": "webhook",
                                                        "webhook_url": "https://93.184.215.14/hook"})
        assert public.status_code == 201 and public.json()["webhook_url"] == "https://93.184.215.14/hook"
