"""Auto-annotation (request types 1 and 2): detections into frame docs, versions, resume."""
