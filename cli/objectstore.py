"""A small S3-compatible object server for Tansu's S3 storage engine on one machine: objects are
files in a directory, each written to a temporary file, fsynced and renamed into place (then the
directory fsynced), so a SIGKILL of this server or of Tansu leaves every object either whole or
absent, and an acknowledged object survives a power cut. Conditional PUTs (If-None-Match: * and
If-Match: ETAG) are checked and applied under one lock and answer 412 when they fail: Tansu relies
on them to never give out an offset twice nor overwrite a stored batch. s3rver, used before,
ignored both and wrote in place.

Only the subset Tansu uses: bucket HEAD/PUT, object PUT/GET/HEAD/DELETE (GET with a Range), and
ListObjectsV2 with prefix, delimiter, start-after and continuation. No authentication: it listens
on loopback only, for a broker started beside it.

    python -m cli.objectstore --port N --directory DIR --bucket NAME
"""

import argparse
import hashlib
import os
import shutil
import sys
import threading
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

SUFFIX = ".obj"  # keeps an object "a" (a.obj) apart from the folder of objects "a/..."
TEMPORARY = ".tmp"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class PreconditionFailed(Exception):
    pass


class Store:
    """The bucket folders under root; every change goes through put or delete."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.temporary = self.root / TEMPORARY
        shutil.rmtree(self.temporary, ignore_errors=True)  # half-written objects of a killed server
        self.temporary.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # makes a conditional check and its rename one step
        self._sequence = 0

    def bucket(self, name: str) -> Path | None:
        path = self.root / name
        return path if _safe_name(name) and path.is_dir() else None

    def create_bucket(self, name: str) -> None:
        if not _safe_name(name):
            raise ValueError(name)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        _fsync_dir(self.root)

    def path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if not _safe_name(bucket) or not key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(key)
        return self.root / bucket / (key + SUFFIX)

    def read(self, bucket: str, key: str) -> tuple[bytes, float] | None:
        try:
            path = self.path(bucket, key)
            with path.open("rb") as file:  # one open file: the body and its time belong together
                return file.read(), os.fstat(file.fileno()).st_mtime
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def put(self, bucket: str, key: str, body: bytes, if_match: str | None, if_none_match: str | None) -> str:
        target = self.path(bucket, key)
        temporary = self._write_temporary(body)
        try:
            with self._lock:
                current = self.read(bucket, key)
                if if_none_match == "*" and current is not None:
                    raise PreconditionFailed(key)
                if if_match is not None and (current is None or not _etag_matches(if_match, etag(current[0]))):
                    raise PreconditionFailed(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, target)
                _fsync_dir(target.parent)
        finally:
            temporary.unlink(missing_ok=True)
        return etag(body)

    def delete(self, bucket: str, key: str) -> None:
        target = self.path(bucket, key)
        with self._lock:
            try:
                target.unlink()
            except FileNotFoundError:
                return
            _fsync_dir(target.parent)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under prefix, in S3's (byte) order."""
        folder = self.root / bucket
        start = folder / prefix.rpartition("/")[0] if "/" in prefix else folder
        found = []
        for directory, _, names in os.walk(start):
            for name in names:
                if name.endswith(SUFFIX):
                    key = (Path(directory) / name).relative_to(folder).as_posix()[:-len(SUFFIX)]
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found, key=lambda k: k.encode())

    def _write_temporary(self, body: bytes) -> Path:
        with self._lock:
            self._sequence += 1
            temporary = self.temporary / f"{os.getpid()}-{self._sequence}"
        with temporary.open("wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        return temporary


def etag(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


def _etag_matches(condition: str, current: str) -> bool:
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in condition.split(",")}
    return "*" in wanted or current.strip('"') in wanted


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..", TEMPORARY)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def list_objects(store: Store, bucket: str, query: dict[str, str]) -> bytes:
    """ListObjectsV2: keys after start-after/continuation-token, folded at the delimiter."""
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    after = query.get("continuation-token") or query.get("start-after") or ""
    limit = max(1, min(int(query.get("max-keys", "1000")), 1000))
    contents: list[str] = []
    prefixes: list[str] = []
    last, truncated = "", False
    for key in store.keys(bucket, prefix):
        if after and key.encode() <= after.encode():
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest.split(delimiter, 1)[0] + delimiter
            if prefixes and prefixes[-1] == common:
                continue
            entry = ("prefix", common)
            resume = common + "\U0010ffff"  # skips the rest of this common prefix
        else:
            entry, resume = ("key", key), key
        if len(contents) + len(prefixes) == limit:
            truncated = True
            break
        (prefixes if entry[0] == "prefix" else contents).append(entry[1])
        last = resume
    items = []
    for key in contents:
        found = store.read(bucket, key)
        if found is None:
            continue  # deleted while listing
        body, mtime = found
        modified = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        items.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{modified}</LastModified>"
                     f"<ETag>{escape(etag(body))}</ETag><Size>{len(body)}</Size>"
                     f"<StorageClass>STANDARD</StorageClass></Contents>")
    items += [f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes]
    token = f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{S3_NS}">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><MaxKeys>{limit}</MaxKeys>"
            f"<Delimiter>{escape(delimiter)}</Delimiter><KeyCount>{len(items)}</KeyCount>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{token}{''.join(items)}"
            f"</ListBucketResult>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Tansu's client expects
    store: Store

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if os.environ.get("OBJECTSTORE_LOG"):
            super().log_message(format, *args)

    def _target(self) -> tuple[str, str, dict[str, str]]:
        url = urlsplit(self.path)
        bucket, _, key = url.path.lstrip("/").partition("/")
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        return unquote(bucket), unquote(key), query

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                send_body: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code></Error>'.encode()
        self._answer(status, body, {"Content-Type": "application/xml"}, self.command != "HEAD")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        body = self._body()
        if not key:
            self.store.create_bucket(bucket)
            return self._answer(HTTPStatus.OK)
        if self.store.bucket(bucket) is None:
            return self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket")
        if query or "x-amz-copy-source" in self.headers:
            return self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented")
        try:
            tag = self.store.put(bucket, key, body, self.headers.get("If-Match"), self.headers.get("If-None-Match"))
        except PreconditionFailed:
            return self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed")
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "InvalidArgument")
        self._answer(HTTPStatus.OK, headers={"ETag": tag})

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if self.store.bucket(bucket) is None:
            return self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket")
        if not key:
            listing = list_objects(self.store, bucket, query)
            return self._answer(HTTPStatus.OK, listing, {"Content-Type": "application/xml"}, self.command != "HEAD")
        try:
            found = self.store.read(bucket, key)
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "InvalidArgument")
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, "NoSuchKey")
        body, mtime = found
        tag = etag(body)
        headers = {"ETag": tag, "Last-Modified": formatdate(mtime, usegmt=True), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if (condition := self.headers.get("If-Match")) and not _etag_matches(condition, tag):
            return self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed")
        if (condition := self.headers.get("If-None-Match")) and _etag_matches(condition, tag):
            return self._answer(HTTPStatus.NOT_MODIFIED, headers={"ETag": tag, "Content-Length": "0"})
        status = HTTPStatus.OK
        if (wanted := self.headers.get("Range")) and body:
            span = _range(wanted, len(body))
            if span is None:
                return self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange")
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, status = body[start:end + 1], HTTPStatus.PARTIAL_CONTENT
        headers["Content-Length"] = str(len(body))
        self._answer(status, body, headers, self.command != "HEAD")

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        if self.store.bucket(bucket) is None:
            return self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket")
        try:
            self.store.delete(bucket, key)
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "InvalidArgument")
        self._answer(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        self._body()
        self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented")


def _range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte span of a single "bytes=a-b", "bytes=a-" or "bytes=-n" range."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    try:
        if not first:
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end else None


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed broker drops its connections
            super().handle_error(request, client_address)


def serve(port: int, directory: Path, bucket: str, host: str = "127.0.0.1") -> Server:
    store = Store(directory)
    store.create_bucket(bucket)
    handler = type("BoundHandler", (Handler,), {"store": store})
    return Server((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    options = parser.parse_args()
    server = serve(options.port, options.directory, options.bucket)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
