"""The old service's `config.cfg`, carried over (issue 17 item 9).

Old files hold Python literals (`allowed_extensions = {'mp4', 'avi'}`, `aug_map = {...}`,
`keep_size_crop = True`): they are read with `ast.literal_eval` (never `eval`) and turned into
this service's text. Old keys keep their old meanings: `[IP] server_ip` was the MongoDB host,
`[Inference] type = opencv-inference` the Darknet model through OpenCV DNN. What cannot be
honoured (a GPU, TensorFlow models, folders this service does not use) is dropped with one
warning each, naming what to use instead. `translate` edits the parsed file in place.
"""
from __future__ import annotations

import ast
import configparser
import json

# (section, key) -> what to use instead: read, never honoured.
UNSUPPORTED = {
    ("Inference", "gpu_device_id"): "detectors run on the CPU here (no GPU is used); remove it",
    ("Inference", "weight_tf"): "TensorFlow models are not supported: use [Inference] type = local, or darknet "
                                "with config_file/weight_file/labels_file",
    ("Inference", "image_size"): "it sized TensorFlow models' input; the local model and Darknet's .cfg size "
                                 "their own input",
    ("Folders", "content_base_s3"): "content is read from [Folders] content_base; objects go to STORAGE_URL "
                                    "(s3://bucket/prefix)",
    ("Folders", "clip_base"): "task videos are written under [Folders] task_base while they are made",
    ("Folders", "aug_base"): "augmented images go straight to storage; no local folder is needed",
}

# The old [Inference] type values -> this service's.
INFERENCE_TYPES = {"opencv-inference": "darknet", "opencv": "darknet", "darknet-inference": "darknet",
                   "aws-inference": "rekognition", "aws": "rekognition", "rekognition-inference": "rekognition"}
UNSUPPORTED_TYPES = {"tensorflow-inference": "TensorFlow models are not supported: using the local detector "
                                             "(SSD MobileNet v2 COCO + CenterFace); for your own model use "
                                             "type = darknet"}


def _plain(value: object) -> str | None:
    """A literal as this service writes it in text, or None when it is not one of those shapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, (set, frozenset, list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(sorted(str(v) for v in value) if isinstance(value, (set, frozenset)) else map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return None


def literal_text(raw: str) -> str:
    """`{'mp4', 'avi'}` -> `avi,mp4`; `{'A': 1}` -> JSON; `True` -> `true`; `'x'` -> `x`. Anything
    that is not a Python literal is left as it is."""
    text = raw.strip()
    if not text or not (text[0] in "{[('\"" or text in ("True", "False")):
        return raw
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw
    plain = _plain(value)
    return raw if plain is None else plain


def translate(parser: configparser.ConfigParser, file_name: str) -> list[str]:
    """Old keys and values to this service's, in place; the warnings to log (one per key)."""
    warnings = []
    for section in parser.sections():
        for key, value in list(parser.items(section, raw=True)):
            parser.set(section, key, literal_text(value))
    if parser.has_option("IP", "server_ip"):  # the old service's MongoDB host
        host = parser.get("IP", "server_ip", raw=True).strip()
        parser.remove_option("IP", "server_ip")
        if host and not (parser.has_option("MongoDB", "host") and parser.get("MongoDB", "host", raw=True).strip()):
            if not parser.has_section("MongoDB"):
                parser.add_section("MongoDB")
            parser.set("MongoDB", "host", host)
    if parser.has_option("Inference", "type"):
        kind = parser.get("Inference", "type", raw=True).strip().lower()
        if kind in INFERENCE_TYPES:
            parser.set("Inference", "type", INFERENCE_TYPES[kind])
        elif kind in UNSUPPORTED_TYPES:
            parser.set("Inference", "type", "local")
            warnings.append(f"{file_name}: [Inference] type = {kind}: {UNSUPPORTED_TYPES[kind]}")
    for (section, key), instead in UNSUPPORTED.items():
        if parser.has_option(section, key):
            parser.remove_option(section, key)
            warnings.append(f"{file_name}: [{section}] {key} is not used by this service: {instead}")
    return warnings
