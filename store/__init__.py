"""What the API and the Celery worker share: settings, database, object storage, the job lifecycle.

Imports nothing else of ours (see DESIGN.md §1). Service functions are small and keyword-only; they
take a ``Session``, flush, and leave committing to the caller (``store.db.session_scope``).
"""
