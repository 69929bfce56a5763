"""The vocabulary every layer shares: one-line errors, atomic files and tables, option parsing, id maps, top-k.

Nothing here knows about models, data files, MLflow or HTTP; every other sub-package may import it.
"""
