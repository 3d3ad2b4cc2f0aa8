"""Build a training dataset from a reviewed dataset version: `dataset_processor.py -v <version id>`.

Not built yet: the dataset builder is the next capability after the content pipeline. This entry
point exists so operators' scripts fail with a clear message instead of a missing file.
"""
from __future__ import annotations

import argparse
import sys

from bson import ObjectId


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--version-id", required=True, help="AnnotationDatasetVersion id (24 hex characters)")
    args = parser.parse_args(argv)
    if not ObjectId.is_valid(args.version_id) or len(args.version_id) != 24:
        parser.error(f"{args.version_id!r} is not a valid ObjectId")
    print("dataset creation is not available in this version of the service", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
