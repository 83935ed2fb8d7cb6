"""The HTTP API (DESIGN.md §3): FastAPI routes over ``store`` (rows, blobs, the job lifecycle) and
``gan_engine`` (spec validation, generation). ``api.main.create_app`` builds the application."""
