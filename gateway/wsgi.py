"""gunicorn entry point: `gunicorn -c gateway/gunicorn.conf.py gateway.wsgi:app`."""

from gateway.app import create_app

app = create_app()
