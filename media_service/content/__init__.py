"""The content job: an uploaded video or image folder in, committed annotation tasks out."""
