"""The WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from dotenv import load_dotenv

from scheduler import create_app

load_dotenv()
app = create_app()
