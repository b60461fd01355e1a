"""A tiny Django project whose URLconf logcount resolves paths with (tests only)."""

SECRET_KEY = "logcount-tests-only"
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS: list[str] = []
ROOT_URLCONF = "djangoproject.urls"
USE_TZ = True
