"""Create the S3 bucket that `STORAGE_URL` names, if it is missing (`python deploy/create_bucket.py`).

docker-compose.yml runs it once before the service and the worker start. It reads the settings
exactly as the service does (config.cfg, CONFIG_SECRETS_FILE, the environment) and talks to the
store through the service's own S3 client (endpoint, region, keys, path-style addressing). Safe to
run again: an existing bucket is left as it is. Waits up to --wait seconds for the store to answer.
Exit status: 0 bucket there (or local storage: nothing to do), 1 the store refused, 2 bad settings.
"""
from __future__ import annotations

import argparse
import sys
import time

from media_service.config import ConfigError, load_settings
from media_service.storage import S3Storage, open_storage

MISSING = {"404", "NoSuchBucket", "NotFound"}


def ensure_bucket(storage: S3Storage, region: str, wait: float) -> str:
    """'exists' or 'created'. A store that is not up yet (no connection, a 5xx answer) is asked
    again for `wait` seconds; a refusal (no access, bad keys) raises at once."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + wait
    while True:
        try:
            return _ensure_once(storage, region)
        except (BotoCoreError, ClientError) as exc:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if isinstance(exc, ClientError) and status < 500 or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _ensure_once(storage: S3Storage, region: str) -> str:
    from botocore.exceptions import ClientError

    try:
        storage.client.head_bucket(Bucket=storage.bucket)
        return "exists"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in MISSING:
            raise
    options = {} if region in ("", "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        storage.client.create_bucket(Bucket=storage.bucket, **options)
    except ClientError as exc:  # created meanwhile by another run
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the store (default 60)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    storage = open_storage(settings)
    if not isinstance(storage, S3Storage):
        print(f"STORAGE_URL is a local folder ({settings.storage.url}): no bucket to create")
        return 0
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        outcome = ensure_bucket(storage, settings.s3.region, args.wait)
    except (BotoCoreError, ClientError) as exc:
        print(f"bucket {storage.bucket} at {settings.s3.endpoint_url or 'AWS'}: {exc}", file=sys.stderr)
        return 1
    print(f"bucket {storage.bucket} at {settings.s3.endpoint_url or 'AWS'}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
