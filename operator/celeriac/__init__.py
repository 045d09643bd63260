"""celeriac: a Kubernetes operator for Celery infrastructure."""

__version__ = "0.1.0"
