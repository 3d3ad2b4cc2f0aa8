"""The embedded MongoDB: mongoeco's wire-protocol server over its SQLite engine, on loopback.

It runs either in a background thread of the calling process (`python app.py`) or as its own
process (`python embedded_mongo.py`), which is what gunicorn's master and the tests start so that
several service processes share one database through `pymongo` and a URI.

In the one-process case the service itself uses mongoeco's in-process client on the same engine
(`local_client()`), while the wire server keeps serving other clients (the Node platform, mongosh).
Measured here: the wire server inserts one document at a time and checks uniqueness by reading the
whole collection, so 120 frame docs into a collection of 2,000 took 5.2 s over the wire and 0.02 s
through the in-process bulk path. The in-process client speaks pymongo's API and raises pymongo's
exceptions, so MongoManager runs unchanged on it and on a real MongoDB.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedMongo:
    """A mongoeco wire server running on its own event loop in a daemon thread."""

    def __init__(self, db_file: Path, port: int = 0, host: str = "127.0.0.1"):
        self.db_file = Path(db_file)
        self.port = port
        self.host = host
        self.uri: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._engine = None

    def start(self, timeout: float = 30.0) -> str:
        from mongoeco.engines import SQLiteEngine

        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self._engine = SQLiteEngine(str(self.db_file))
        self._thread = threading.Thread(target=self._run, name="embedded-mongo", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded MongoDB did not start in time")
        if self._error:
            raise RuntimeError(f"embedded MongoDB failed to start: {self._error}") from self._error
        log.info("embedded MongoDB (mongoeco, SQLite %s) listening on %s:%s", self.db_file, self.host, self.port)
        return self.uri

    def local_client(self):
        """A pymongo-compatible client on the server's own engine: same data, no socket."""
        from mongoeco import CodecOptions, MongoClient

        return MongoClient(engine=self._engine, codec_options=CodecOptions(tz_aware=True))

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from mongoeco.wire import AsyncMongoEcoProxyServer

        server = AsyncMongoEcoProxyServer(engine=self._engine, host=self.host, port=self.port)
        address = await server.start()
        self.port = address.port
        self.uri = f"mongodb://{self.host}:{address.port}/?directConnection=true"
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded MongoDB (mongoeco) on loopback.")
    parser.add_argument("--db-file", required=True, help="SQLite file that holds the data")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    parser.add_argument("--uri-file", help="write the connection URI here once listening")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = EmbeddedMongo(Path(args.db_file), args.port)
    uri = server.start()
    if args.uri_file:
        tmp = Path(args.uri_file + ".tmp")
        tmp.write_text(uri)
        tmp.replace(args.uri_file)  # readers never see a half-written URI
    print(uri, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
