"""The ``anime-recs`` command: :mod:`.main` (entry point), :mod:`.query` (ask a model), :mod:`.mal` (refresh)."""
