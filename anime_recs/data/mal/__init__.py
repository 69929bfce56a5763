"""Fresh data from the official MyAnimeList API v2.

- :mod:`.client`: the HTTP client (client id from ``MAL_CLIENT_ID``, rate limit, retries);
- :mod:`.mapping`: API JSON → the columns and spellings of the pipeline's raw files;
- :mod:`.checkpoint`: append-only JSONL checkpoints and the private user-name → id map;
- :mod:`.refresh`: the resumable refresh behind ``anime-recs mal refresh``;
- :mod:`.source`: the ``mal-api:FOLDER`` download source that publishes a finished refresh;
(The ``anime-recs mal`` command is :mod:`anime_recs.cli.mal`.)
"""
