"""Deploy targets: ``local`` (supervised processes), ``docker`` and ``k8s``."""
