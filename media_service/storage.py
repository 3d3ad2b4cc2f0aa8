"""Object storage: a local folder or any S3 endpoint, behind one small interface.

Keys are the contract's (`contents/<projectId>/<taskName>/<taskName>.mp4`); the local folder
holds the same keys as paths, so switching is one setting (`STORAGE_URL`).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from media_service import metrics
from media_service.errors import StorageError
from media_service.signed_urls import UrlSigner, signer_for

log = logging.getLogger(__name__)




class Storage(Protocol):
    description: str

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def url(self, key: str, expires_seconds: int) -> str: ...
    # Documents hold each object's full key in the bucket (with the deployment's prefix), so Node
    # can presign it as it is; the methods above take keys relative to the prefix.
    def document_key(self, key: str) -> str: ...
    def own_key(self, document_key: str) -> str: ...
    def check(self, timeout: float) -> None: ...  # raises when the storage cannot be used (readiness)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise StorageError(f"invalid object key: {key!r}")
    return key


class LocalStorage:
    def __init__(self, root: Path, signer: UrlSigner | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self.description = f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def document_key(self, key: str) -> str:
        return _check_key(key)

    def check(self, timeout: float) -> None:
        """The folder can be written: a file made and removed (raises otherwise)."""
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=self.root)
        os.close(fd)
        os.unlink(name)

    def own_key(self, document_key: str) -> str:
        return document_key

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)  # same filesystem: no copy (the caller never rewrites `path`)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, target)  # readers see the whole object or none

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # readers see the whole object or none

    def url(self, key: str, expires_seconds: int) -> str:
        """A signed HTTP URL served by this service (GET /storage/<key>), as S3 presigns one; without
        a signer, the object's file:// URI (only this machine can open it)."""
        if self.signer is None:
            return self._path(key).as_uri()
        return self.signer.url(_check_key(key), expires_seconds)

    def delete(self, key: str) -> None:
        target = self._path(key)
        target.unlink(missing_ok=True)
        # Remove now-empty parent folders, never the root itself.
        parent = target.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file() and not p.name.startswith(".")
                      and str(p.relative_to(self.root)).startswith(prefix))

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def path_of(self, key: str) -> Path:
        """Where the object lies, to be read in place (never written: objects are replaced whole)."""
        return self._path(key)

    def get_file(self, key: str, path: Path) -> None:
        """A copy of the object at `path` (the caller may change or delete it)."""
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            metrics.count("storage_errors", operation="download")
            raise StorageError(f"object {key} is missing from {self.description}", permanent=True) from None


class S3Storage:
    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, region: str,
                 access_key_id: str | None, secret_access_key: str | None, attempts: int,
                 check_timeout: float = 0.8):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # The one retry layer: botocore's "standard" mode retries throttling, 5xx and connection
        # errors with backoff, each request of a multipart upload on its own.
        config = Config(retries={"total_max_attempts": attempts, "mode": "standard"}, signature_version="s3v4",
                        connect_timeout=10, read_timeout=60, s3={"addressing_style": "path"} if endpoint_url else None)
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region,
                                   aws_access_key_id=access_key_id or None,
                                   aws_secret_access_key=secret_access_key or None, config=config)
        self.description = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        # Readiness asks the bucket with a client of its own: the working one waits and retries for
        # long. Made here, since making a client takes longer than a readiness answer may.
        self._probe = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config.merge(Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                       connect_timeout=check_timeout, read_timeout=check_timeout)))

    def check(self, timeout: float) -> None:
        """The bucket answers (HEAD bucket), within the readiness budget and with no retry (raises
        otherwise)."""
        self._probe.head_bucket(Bucket=self.bucket)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def document_key(self, key: str) -> str:
        return self._key(key)

    def own_key(self, document_key: str) -> str:
        """The key relative to the prefix; a document written before keys carried the prefix holds
        the relative key already."""
        if self.prefix and document_key.startswith(self.prefix + "/"):
            return document_key[len(self.prefix) + 1:]
        return document_key

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})
        except S3UploadFailedError as exc:  # wraps the ClientError (its own text names the local file)
            raise self._error(key, exc.__context__ or exc) from None
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from None

    def _error(self, key: str, exc: BaseException, operation: str = "upload") -> StorageError:
        metrics.count("storage_errors", operation=operation)
        error = getattr(exc, "response", {}).get("Error", {})
        code = error.get("Code", "")
        reason = f"{code}: {error.get('Message', '')}".strip(": ") if code else str(exc)
        return StorageError(f"upload of {key} to s3://{self.bucket}/{self.prefix} failed: {reason}",
                            permanent=code in _PERMANENT)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from None

    def url(self, key: str, expires_seconds: int) -> str:
        """A presigned GET URL (SigV4 allows at most 7 days)."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=min(expires_seconds, 7 * 24 * 3600))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list_keys(self, prefix: str) -> list[str]:
        # A folder's prefix ends with "/": checked as a key without it (an empty segment is no key).
        full = self._key(prefix.rstrip("/")) + "/" * prefix.endswith("/") if prefix else self.prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def get_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            missing = code in ("404", "NoSuchKey", "NotFound")
            metrics.count("storage_errors", operation="download")
            raise StorageError(f"download of {key} from s3://{self.bucket}/{self.prefix} failed: "
                               f"{'no such object' if missing else code or exc}",
                               permanent=missing or code in _PERMANENT) from None
        except BotoCoreError as exc:
            metrics.count("storage_errors", operation="download")
            raise StorageError(f"download of {key} from s3://{self.bucket}/{self.prefix} failed: {exc}") from None


# S3 error codes that no retry can fix.
_PERMANENT = {"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName",
              "AllAccessDisabled", "AccountProblem", "InvalidArgument"}


def open_storage(settings) -> Storage:
    url = settings.storage.url
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Storage(bucket, prefix, endpoint_url=settings.s3.endpoint_url, region=settings.s3.region,
                         access_key_id=settings.s3.access_key_id,
                         secret_access_key=settings.s3.secret_access_key, attempts=settings.s3.upload_attempts,
                         check_timeout=settings.app.ready_budget_seconds)
    return LocalStorage(Path(url).expanduser(), signer_for(settings))
