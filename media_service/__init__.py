"""The media service for the annotation platform: one package, a room per feature.

Core modules (config, logging_setup, services, worker_pool, storage, contract, paths) are what every
feature stands on; `web/` holds the HTTP routes, `content/`, `privacy/`, `annotation/` and
`datasets/` one feature each, `detectors/` the models, `media/` the video work with PyAV, `mongo/`
every read and write of MongoDB. The root files `video_processor.py` and `mongo_manager.py` are
doors onto `media/` and `mongo/` for scripts and old callers; the package never imports a root file.
"""
