"""The pure webhook address rule: every notation of a host, every kind of non-public address."""

from ipaddress import ip_address

import pytest

from services.notify.domain import address_refusal, literal_address, webhook_url_refusal, without_credentials


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("127.1", "127.0.0.1"),  # short
    ("0x7f.1", "127.0.0.1"),  # mixed
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("169.254.169.254", "169.254.169.254"),
    ("0", "0.0.0.0"),
])
def test_every_notation_of_an_address_is_read_as_that_address(host, address):
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize("host", ["example.org", "08.1.1.1", "1.2.3.256", "256.1", "4294967296", "1.2.3.4.5",
                                  "1_0.0.0.1", "127.0.0.1x"])
def test_names_and_impossible_numbers_are_not_addresses(host):
    assert literal_address(host) is None


@pytest.mark.parametrize(("host", "kind"), [
    ("2130706433", "loopback"), ("0x7f000001", "loopback"), ("0177.0.0.1", "loopback"), ("127.1", "loopback"),
    ("[::1]", "loopback"), ("[::ffff:127.0.0.1]", "IPv4-mapped"), ("[::ffff:8.8.8.8]", "IPv4-mapped"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("[fd00::1]", "private"),
    ("169.254.169.254", "link-local"), ("[fe80::1]", "link-local"),
    ("0.0.0.0", "unspecified"), ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"), ("224.0.1.1", "multicast"), ("[ff02::1]", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("192.0.2.1", "private"),  # documentation range
    ("[64:ff9b::7f00:1]", "non-public IPv4"), ("[2002:a00:1::]", "non-public IPv4"),  # NAT64, 6to4
])
def test_non_public_addresses_are_refused_and_named(host, kind):
    reason = address_refusal(literal_address(host))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("host", ["93.184.215.14", "8.8.8.8", "[2606:4700:4700::1111]", "[2002:808:808::]"])
def test_public_addresses_pass(host):
    assert address_refusal(literal_address(host)) is None


def test_the_loopback_exception_is_for_loopback_only():
    assert address_refusal(ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_refusal(ip_address("::1"), allow_loopback=True) is None
    for other in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "::ffff:127.0.0.1", "100.64.0.1"):
        assert address_refusal(ip_address(other), allow_loopback=True) is not None


def test_url_form_scheme_and_credentials():
    assert webhook_url_refusal("https://example.org/hook", require_https=True) is None
    assert webhook_url_refusal("http://example.org/hook", require_https=True) == "must be an https URL"
    assert webhook_url_refusal("http://example.org/hook", require_https=False) is None
    assert webhook_url_refusal("ftp://example.org/hook", require_https=False) == "must be an https URL"
    for url in ("https://user:pw@example.org/", "https://user@example.org/", "https://:pw@example.org/"):
        assert "credentials" in webhook_url_refusal(url, require_https=True)
    assert without_credentials("https://user:pw@example.org:8443/h?x=1") == "https://example.org:8443/h?x=1"
