"""WSGI entry point: `gunicorn wsgi:app` (gunicorn.conf.py sets the production layout)."""
from app import create_app

app = create_app()
