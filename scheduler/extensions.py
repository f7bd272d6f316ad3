"""The Flask extensions, created unbound and initialised in :func:`scheduler.create_app`."""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from scheduler.db import Base

# Database errors (logged, or in a traceback) show the SQL but never the values bound to it:
# those are patients' names, contact details and health answers.
db = SQLAlchemy(model_class=Base, engine_options={"hide_parameters": True})
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
