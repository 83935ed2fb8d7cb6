"""gan_engine: train GANs from a spec. Knows nothing of HTTP, databases or Celery."""

from gan_engine.spec import Spec, SpecError, load_spec, parse_spec

__all__ = ["Spec", "SpecError", "load_spec", "parse_spec"]
