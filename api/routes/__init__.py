"""One router per resource; the work is in ``api.services``."""
