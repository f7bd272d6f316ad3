"""The Flask extensions, created unbound and initialised in :func:`scheduler.create_app`."""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from scheduler.db import Base
from scheduler.security import CSRFProtect

# Database errors (logged, or in a traceback) show the SQL but never the values bound to it:
# those are patients' names, contact details and health answers.
db = SQLAlchemy(model_class=Base, engine_options={"hide_parameters": True})
migrate = Migrate()
# Flask-WTF's, with the token pages checked by their CSRF token alone (scheduler/security.py).
csrf = CSRFProtect()
login_manager = LoginManager()
