"""The media service for the annotation platform: one package, a room per feature.

Core modules (config, logging_setup, services, jobs, storage, contract, paths) are what every
feature stands on; `web/` holds the HTTP routes, `content/`, `privacy/`, `annotation/` and
`datasets/` one feature each, `detectors/` the models, `media/` the video work with PyAV.
`mongo_manager` and `video_processor` stay at the project root as the one place for MongoDB and
the one door to PyAV's work.
"""
