"""The S3 blob store (AWS S3, SeaweedFS, any S3-compatible endpoint) behind ``BlobStore``.

Every object is written with one PutObject (clips are a few MB at most; no multipart, so an
interrupted upload never leaves a partial object) and copied server-side with CopyObject
(a new object, so it carries its own time, P4). Timeouts and retries are short so an
unreachable endpoint fails in seconds; every transport or endpoint error becomes
``StorageUnavailable`` and a missing object ``BlobNotFound``.

Residue (P3, P4): SeaweedFS keeps a deleted object's bytes, with its write time, in the
volume's ``.dat`` file until the volume is compacted. Given ``seaweedfs_master``, ``compact``
asks the master to vacuum every volume with any garbage. SeaweedFS's filer deletes an
object's chunks from the volumes in the background, so a compaction right after a delete may
find nothing yet; the next one (the next release cycle or withdrawal) takes them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, Literal, NoReturn, cast
from urllib.parse import unquote, urlsplit

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from core.errors import (
    BlobNotFound,
    ChorusError,
    ConfigurationError,
    StorageFull,
    StorageUnavailable,
)
from core.storage import (
    DEFAULT_CHUNK_SIZE,
    ChunkIterator,
    storage_error,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from core.storage import BlobStore

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 15.0
MAX_ATTEMPTS = 2  # the first try and one retry
MAX_PRESIGN_S = 7 * 24 * 3600
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
# Compacting rewrites whole volumes: give it longer than an object request.
VACUUM_TIMEOUT_S = 300.0
# Any garbage at all: a single deleted clip is a clip too many.
VACUUM_GARBAGE_THRESHOLD = "0.0001"

AddressingStyle = Literal["auto", "virtual", "path"]

_URL_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region",
        "access_key",
        "secret_key",
        "addressing_style",
        "seaweedfs_master",
        "public_endpoint_url",
    }
)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING_OBJECT = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET = frozenset({"NoSuchBucket", "404", "NotFound"})
_REFUSED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
)
_TRANSPORT_ERRORS = (BotoCoreError, Urllib3Error, ConnectionError, TimeoutError)
# A server out of space: HTTP 507 and the codes S3-compatible servers send with it.
_FULL = frozenset({"507", "InsufficientStorage", "XMinioStorageFull", "QuotaExceeded"})


class S3BlobStore:
    """Objects in one S3 bucket; keys are object names."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        addressing_style: AddressingStyle | None = None,
        page_size: int = 1000,
        seaweedfs_master: str | None = None,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.seaweedfs_master = seaweedfs_master.rstrip("/") if seaweedfs_master else None
        self.region = region
        self.page_size = page_size
        config = Config(
            region_name=region,
            signature_version="s3v4",
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            max_pool_connections=32,
            # Path-style for custom endpoints: ``http://host:port/bucket/key``.
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
            # Plain Content-Length uploads: a body that fails mid-way aborts the request.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        # Presigned URLs are for clients outside the deployment: signed for the endpoint they
        # reach (``public_endpoint_url``), which may differ from the one the service uses.
        self.public_endpoint_url = public_endpoint_url
        self._presigner: S3Client = (
            self._client
            if public_endpoint_url is None
            else (
                boto3.client(
                    "s3",
                    endpoint_url=public_endpoint_url,
                    region_name=region,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    config=config,
                )
            )
        )

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """``s3://bucket?endpoint_url=…&region=…&access_key=…&secret_key=…&seaweedfs_master=…``
        ``&public_endpoint_url=…`` (the endpoint researchers reach, for presigned URLs).

        Query values are percent-decoded; a ``+`` stays a ``+`` (secret keys contain them).
        Without ``access_key``/``secret_key`` boto3's usual credential chain applies.
        """
        parts = urlsplit(url)
        bucket = parts.netloc
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigurationError(
                f"the S3 storage URL for bucket {bucket!r} must not have a path: "
                "use s3://bucket?endpoint_url=…"
            )
        if not _BUCKET_NAME.match(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"the S3 storage URL names an invalid bucket {bucket!r}: use 3-63 lowercase "
                "letters, digits, dots or hyphens"
            )
        options = _query_options(parts.query)
        if ("access_key" in options) != ("secret_key" in options):
            raise ConfigurationError(
                "the S3 storage URL must give both access_key and secret_key, or neither"
            )
        endpoint_url = _http_url(options, "endpoint_url")
        seaweedfs_master = _http_url(options, "seaweedfs_master")
        public_endpoint_url = _http_url(options, "public_endpoint_url")
        style = options.get("addressing_style")
        if style is not None and style not in ("path", "virtual", "auto"):
            raise ConfigurationError(
                f"the S3 addressing_style {style!r} must be path, virtual or auto"
            )
        return cls(
            bucket,
            endpoint_url=endpoint_url,
            region=options.get("region") or "us-east-1",
            access_key=options.get("access_key"),
            secret_key=options.get("secret_key"),
            addressing_style=cast("AddressingStyle | None", style),
            seaweedfs_master=seaweedfs_master,
            public_endpoint_url=public_endpoint_url,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    # writing

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        with self._errors("write"):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))

    def put_file(self, key: str, source: BinaryIO) -> None:
        validate_key(key)
        with self._errors("write"):
            length = os.fstat(source.fileno()).st_size - source.tell()
            self._client.put_object(Bucket=self.bucket, Key=key, Body=source, ContentLength=length)

    def copy(self, src: str, dst: str) -> None:
        validate_key(src)
        validate_key(dst)
        with self._errors("copy", src):
            self._client.copy_object(
                Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src}
            )

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._errors("delete"):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """DeleteObjects, 1,000 keys a request; ``StorageUnavailable`` if any key failed."""
        for key in keys:
            validate_key(key)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self._errors("delete"):
                answer = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            failed = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING_OBJECT]
            if failed:
                raise StorageUnavailable(
                    f"S3 delete failed for {len(failed)} object(s) in bucket {self.bucket!r}: "
                    f"{failed[0].get('Code')}"
                )

    # reading

    def get(self, key: str) -> bytes:
        return b"".join(self.stream(key))

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        validate_key(key)
        with self._errors("read", key):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        chunks = body.iter_chunks(chunk_size)

        def read() -> bytes:
            with self._errors("read", key):
                return next(chunks, b"")

        return ChunkIterator(read, body.close)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        validate_key(key)
        if start < 0 or length < 0:
            raise ValueError("a range starts and lasts at least 0 bytes")
        if length == 0:
            return b""
        with self._errors("read", key):
            try:
                body = self._client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )["Body"]
            except ClientError as exc:
                if _error_code(exc) != "InvalidRange":
                    raise
                return b""  # the range starts past the object's end
            try:
                return body.read()
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        validate_key(key)
        with self._errors("read", key):
            return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]

    def list(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, sorted.

        AWS lists in key order, SeaweedFS folder by folder (``a/b`` before ``a-c``), so the
        keys of all pages are gathered and sorted: memory grows with the listing (about
        100 bytes a key).
        """
        validate_prefix(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        )
        keys: list[str] = []
        with self._errors("list"):
            for page in pages:
                keys.extend(entry["Key"] for entry in page.get("Contents", []))
        keys.sort()
        return iter(keys)

    # operations

    def check(self, *, min_free_bytes: int = 0) -> None:
        """Reachability only: S3 reports no free space (``min_free_bytes`` is not checked)."""
        with self._errors("check"):
            self._client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; ``ConfigurationError`` if access is refused."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = _error_code(exc)
            if code in _REFUSED:
                raise ConfigurationError(
                    f"the S3 store refused access to bucket {self.bucket!r} ({code}): "
                    "check access_key and secret_key"
                ) from None
            if code not in _MISSING_BUCKET:
                self._raise(exc, "check", None)
        except _TRANSPORT_ERRORS as exc:
            self._raise(exc, "check", None)
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=self.bucket)
            else:
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                )
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._raise(exc, "create bucket", None)
        except _TRANSPORT_ERRORS as exc:
            self._raise(exc, "create bucket", None)

    def presigned_url(self, key: str, *, expires_s: int) -> str | None:
        validate_key(key)
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be between 1 and {MAX_PRESIGN_S}, not {expires_s}")
        with self._errors("presign"):
            return self._presigner.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )

    def compact(self) -> None:
        """Ask the SeaweedFS master to vacuum volumes holding deleted objects (no master: no-op).

        ``StorageUnavailable`` when the master does not answer or refuses.
        """
        if self.seaweedfs_master is None:
            return
        url = f"{self.seaweedfs_master}/vol/vacuum"
        try:
            response = httpx.get(
                url,
                params={"garbageThreshold": VACUUM_GARBAGE_THRESHOLD},
                timeout=httpx.Timeout(VACUUM_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            raise StorageUnavailable(
                f"SeaweedFS vacuum failed at {self.seaweedfs_master}: {type(exc).__name__}"
            ) from exc
        if response.is_error:
            raise StorageUnavailable(
                f"SeaweedFS vacuum failed at {self.seaweedfs_master}: HTTP {response.status_code}"
            )

    def close(self) -> None:
        """Release the connection pool (the store is unusable afterwards)."""
        self._client.close()
        if self._presigner is not self._client:
            self._presigner.close()

    # errors

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Translate boto and transport errors; a missing ``key`` is ``BlobNotFound``."""
        try:
            yield
        except ChorusError:
            raise
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            self._raise(exc, action, key)
        except OSError as exc:  # the local file of put_file, or a socket error unwrapped
            raise storage_error(exc, action) from exc

    def _raise(self, exc: Exception, action: str, key: str | None) -> NoReturn:
        where = f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS S3'}"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if key is not None and code in _MISSING_OBJECT:
                raise BlobNotFound(f"no object {key!r}") from None
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _FULL or status in _FULL:
                raise StorageFull(f"S3 {action} failed for {where}: {code or status}") from exc
            if code == "NoSuchBucket" or (key is None and code in _MISSING_BUCKET):
                raise StorageUnavailable(f"S3 {action} failed: no {where}") from exc
            raise StorageUnavailable(f"S3 {action} failed for {where}: {code}") from exc
        raise StorageUnavailable(f"S3 {action} failed for {where}: {type(exc).__name__}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_url(options: dict[str, str], name: str) -> str | None:
    url = options.get(name) or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"the S3 {name} {url!r} must be an http:// or https:// URL")
    return url


def _query_options(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        raw_name, _, raw_value = pair.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if name not in _URL_OPTIONS:
            raise ConfigurationError(
                f"the S3 storage URL has an unknown option {name!r}: use "
                + ", ".join(sorted(_URL_OPTIONS))
            )
        if name in options:
            raise ConfigurationError(f"the S3 storage URL gives {name!r} twice")
        options[name] = value
    return options


if TYPE_CHECKING:

    def _conforms(store: S3BlobStore) -> BlobStore:
        return store
