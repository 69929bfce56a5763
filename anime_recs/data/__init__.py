"""The data: where raw files come from and how they become training ratings.

- :mod:`.files`: the three MyAnimeList files, their columns and checks;
- :mod:`.download`: fetching sources (URLs, local paths, CSV -> parquet); :mod:`.sample`: the embedded default
  data set; :mod:`.synthetic`: ratings with a known structure for tests and benchmarks; :mod:`.mal`: rebuilding
  the files from the MyAnimeList API;
- :mod:`.preprocess` (the rules) and :mod:`.preprocess_file` (out of core); :mod:`.streaming`: training rows in
  record batches for data larger than memory.
"""
