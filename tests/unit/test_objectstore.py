"""The object server Tansu writes to: conditional writes refuse what S3 refuses, a write leaves the
object whole or absent, and listing follows ListObjectsV2 (prefix, delimiter, continuation)."""

import threading
from xml.etree import ElementTree

import httpx
import pytest

from cli.objectstore import TEMPORARY, PreconditionFailed, Store, etag, list_objects, serve

KEY = "clusters/c/topics/t/partitions/0000000000/records/00000000000000000000.batch"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    s.create_bucket("tansu")
    return s


def test_if_none_match_star_creates_once(store):
    store.put("tansu", KEY, b"first", None, "*")
    with pytest.raises(PreconditionFailed):
        store.put("tansu", KEY, b"second", None, "*")
    assert store.read("tansu", KEY)[0] == b"first"


def test_if_match_replaces_only_the_version_read(store):
    old = store.put("tansu", "watermark.json", b'{"high":1}', None, "*")
    new = store.put("tansu", "watermark.json", b'{"high":2}', old, None)
    with pytest.raises(PreconditionFailed):
        store.put("tansu", "watermark.json", b'{"high":1}', old, None)  # a writer with a stale copy
    with pytest.raises(PreconditionFailed):
        store.put("tansu", "absent.json", b"{}", new, None)
    assert store.read("tansu", "watermark.json")[0] == b'{"high":2}'


def test_concurrent_creates_of_one_key_admit_exactly_one(store):
    winners = []

    def create(n: int) -> None:
        try:
            store.put("tansu", KEY, str(n).encode(), None, "*")
            winners.append(n)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and store.read("tansu", KEY)[0] == str(winners[0]).encode()


def test_a_half_written_object_of_a_killed_server_never_appears(tmp_path, store):
    (tmp_path / TEMPORARY / "123-1").write_bytes(b"torn")  # what a SIGKILL mid-write leaves
    reopened = Store(tmp_path)
    assert reopened.keys("tansu", "") == [] and not any((tmp_path / TEMPORARY).iterdir())


def test_keys_cannot_leave_the_bucket(store):
    for key in ("../escape", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            store.put("tansu", key, b"x", None, None)


def test_listing_folds_at_the_delimiter_and_continues_after_a_token(store):
    for key in ("a/1", "a/2", "b/1", "c"):
        store.put("tansu", key, key.encode(), None, None)

    def listed(**query) -> tuple[list[str], list[str], str | None]:
        root = ElementTree.fromstring(list_objects(store, "tansu", query))
        text = [(e.tag.rpartition("}")[2], e.text) for e in root.iter()]
        prefixes = [t for tag, t in text if tag == "Prefix" and t and t != query.get("prefix")]
        return ([t for tag, t in text if tag == "Key"], prefixes,
                next((t for tag, t in text if tag == "NextContinuationToken"), None))

    assert listed() == (["a/1", "a/2", "b/1", "c"], [], None)
    assert listed(delimiter="/") == (["c"], ["a/", "b/"], None)
    assert listed(prefix="a/") == (["a/1", "a/2"], [], None)
    keys, _, token = listed(**{"max-keys": "2"})
    assert keys == ["a/1", "a/2"] and listed(**{"continuation-token": token})[0] == ["b/1", "c"]


def test_http_conditional_put_answers_412_and_range_get(tmp_path):
    server = serve(0, tmp_path, "tansu")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}") as http:
            created = http.put(f"/tansu/{KEY}", content=b"0123456789", headers={"If-None-Match": "*"})
            assert created.status_code == 200 and created.headers["ETag"] == etag(b"0123456789")
            assert http.put(f"/tansu/{KEY}", content=b"x", headers={"If-None-Match": "*"}).status_code == 412
            assert http.put(f"/tansu/{KEY}", content=b"x", headers={"If-Match": '"stale"'}).status_code == 412
            part = http.get(f"/tansu/{KEY}", headers={"Range": "bytes=2-4"})
            assert part.status_code == 206 and part.content == b"234"
            assert http.head(f"/tansu/{KEY}").headers["Last-Modified"]
            assert http.delete(f"/tansu/{KEY}").status_code == 204
            assert http.get(f"/tansu/{KEY}").status_code == 404
    finally:
        server.shutdown()
        server.server_close()
