"""The anime catalogue side of :class:`~anime_recs.recommend.recommender.AnimeRecommender`.

Metadata of every anime in one cached table (rows in ascending MAL_ID), the
genre multi-hot matrix, type codes, scores, forgiving name lookup, and the
filters (genres, types, score range, explicit items) as boolean masks over the
candidate set, so filters act inside the top-k.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from anime_recs.core.config import str_to_list
from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import DataValidationError, UserInputError
from anime_recs.core.parsing import ASCII_DIGITS, check_name
from anime_recs.recommend.names import MISSING_MARKER, normalise_name

logger = logging.getLogger(__name__)

#: Metadata columns of every anime result, in order (computed columns go after ``Name``).
RESULT_COLUMNS: tuple[str, ...] = (
    "MAL_ID",
    "Name",
    "English name",
    "Japanese name",
    "Genres",
    "Type",
    "Episodes",
    "Score",
    "Source",
    "Members",
    "Synopsis",
)
_REQUIRED_ANIME = ("MAL_ID", "Name", "Genres", "Type", "Score", "Episodes")
_SYNOPSIS_COLUMNS = ("sypnopsis", "synopsis", "Synopsis")  # upstream spells it "sypnopsis"


def count_series(labels: np.ndarray, counts: np.ndarray, name: str) -> pd.Series:
    """Label -> count, most frequent first, ties alphabetically; zeros and ``Unknown`` dropped.

    Args:
        labels: Alphabetically sorted labels.
        counts: One count per label.
        name: Name of the index (``genre`` / ``source``).
    """
    keep = np.flatnonzero((counts > 0) & (labels != MISSING_MARKER))
    keep = keep[np.argsort(-counts[keep], kind="stable")]  # stable: ties stay alphabetical
    return pd.Series(
        counts[keep].astype(np.int64), index=pd.Index(labels[keep].astype(str), dtype="str", name=name), name="count"
    )


_HINTS = {
    "unseen": "the user has rated every anime the model can recommend",
    "items": "none of the given items qualifies",
    "exclude": "everything left was excluded",
}


def is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value: object, name: str) -> int:
    """A positive int option (``n``, ``num_faves`` ...), or a one-line error."""
    if not is_integer(value) or int(value) < 1:  # type: ignore[call-overload]
        raise UserInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _preview(values: Sequence[object], limit: int = 60) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")


# ---------------------------------------------------------------------------


class Catalogue:
    """Anime metadata, lookups and filter masks (mixed into the recommender).

    Needs ``anime_encoder``, ``_emb_anime_ids`` and ``n_anime`` from the class it is mixed into.
    """

    def _init_anime(self, anime: pd.DataFrame, synopses: pd.DataFrame | None) -> None:
        missing = [c for c in _REQUIRED_ANIME if c not in anime.columns]
        if missing:
            raise DataValidationError(f"anime table lacks column(s) {missing}; expected the all-anime CSV columns")
        table = anime.drop_duplicates("MAL_ID", keep="first")
        # Rows in ascending MAL_ID order: the one id map (IdEncoder) then gives table rows directly.
        table = table.iloc[np.argsort(table["MAL_ID"].to_numpy(np.int64), kind="stable")]
        if len(table) < len(anime):
            logger.warning("anime table: dropped %d duplicate MAL_IDs", len(anime) - len(table))
        meta = pd.DataFrame({"MAL_ID": table["MAL_ID"].to_numpy(np.int64)})
        for column in ("Name", "English name", "Japanese name", "Genres", "Type", "Source"):
            values = table[column] if column in table.columns else pd.Series(MISSING_MARKER, index=table.index)
            meta[column] = values.astype("str").fillna(MISSING_MARKER).to_numpy()
        meta["Episodes"] = pd.to_numeric(table["Episodes"], errors="coerce").to_numpy(np.float64)
        meta["Score"] = pd.to_numeric(table["Score"], errors="coerce").to_numpy(np.float64)
        members = table["Members"] if "Members" in table.columns else pd.Series(0, index=table.index)
        meta["Members"] = pd.to_numeric(members, errors="coerce").fillna(0).to_numpy(np.int64)
        meta["Synopsis"] = self._synopsis_column(meta["MAL_ID"], synopses)
        # English name when known, else the romaji Name: what the original showed people.
        eng = meta["English name"].where(meta["English name"] != MISSING_MARKER, meta["Name"])
        self._meta = meta[list(RESULT_COLUMNS)]
        # Plain numpy columns (strings as objects) for result frames: a pandas take over eleven
        # arrow-backed columns costs ~1.5 ms per answer, more than most queries themselves.
        self._meta_arrays = {column: self._meta[column].to_numpy(object if self._meta[column].dtype == "str" else None)
                             for column in RESULT_COLUMNS}
        n_rows = len(meta)

        self._mal_ids = meta["MAL_ID"].to_numpy(np.int64)
        self._mal_sorted = np.sort(self._mal_ids)
        self._row_lookup = IdEncoder.from_sorted(self._mal_ids, "anime")
        self._emb_lookup = self.anime_encoder.positions
        self._names_arr = meta["Name"].to_numpy(object)
        self._eng_arr = eng.to_numpy(object)
        self._genres_arr = meta["Genres"].to_numpy(object)
        self._types_arr = meta["Type"].to_numpy(object)

        # Metadata arrays carry one extra "sentinel" row at the end, so that the row
        # index -1 (anime without metadata) reads as no genres, no type, unknown score.
        genres = meta["Genres"].str.replace(r"\s*,\s*", ",", regex=True).str.strip().str.get_dummies(sep=",")
        genres = genres.drop(columns=[c for c in genres.columns if c in ("", MISSING_MARKER)])
        self.genres: list[str] = [str(c) for c in genres.columns]
        self._genre_key = {normalise_name(g): i for i, g in enumerate(self.genres)}
        self._G = np.zeros((n_rows + 1, len(self.genres)), dtype=bool)
        self._G[:n_rows] = genres.to_numpy(dtype=bool)

        type_codes, type_names = pd.factorize(meta["Type"], sort=True)
        self.types: list[str] = [str(t) for t in type_names]
        self._type_key = {normalise_name(t): i for i, t in enumerate(self.types)}
        self._type = np.append(type_codes.astype(np.int32), -1)
        self._score = np.append(meta["Score"].to_numpy(np.float64), np.nan)
        self._episodes = np.append(meta["Episodes"].to_numpy(np.float64), np.nan)
        self._members = np.append(meta["Members"].to_numpy(np.int64), 0)
        # Popularity rank (most members first, then smaller MAL_ID): the last favourite tie-break.
        rank = np.empty(n_rows + 1, np.int64)
        rank[np.lexsort((self._mal_ids, -self._members[:-1]))] = np.arange(n_rows)
        rank[-1] = n_rows
        self._popularity_rank = rank
        self._source = np.append(meta["Source"].to_numpy(object), MISSING_MARKER)
        source_code, source_labels = pd.factorize(meta["Source"], sort=True)
        self._source_code = np.append(source_code, 0)
        self._source_labels = np.asarray(source_labels, dtype=object)
        self._genre_labels = np.asarray(self.genres, dtype=object)

        # Embedding row <-> table row.
        self._emb_to_row = self._rows_of(self._emb_anime_ids)
        self._row_to_emb = self._emb_lookup(self._mal_ids)
        self._emb_has_meta = self._emb_to_row >= 0
        self._G_emb = self._G[self._emb_to_row]
        self._type_emb = self._type[self._emb_to_row]
        self._score_emb = self._score[self._emb_to_row]
        self._random_anime_pool = self._emb_anime_ids[self._emb_has_meta]
        if not self._emb_has_meta.all():
            logger.warning(
                "%d anime have embeddings but no row in the anime table; they are never recommended",
                int((~self._emb_has_meta).sum()),
            )
        if len(self._random_anime_pool) == 0:
            raise DataValidationError("no anime is both in the anime table and in the model; wrong anime table?")

    @staticmethod
    def _synopsis_column(mal_ids: pd.Series, synopses: pd.DataFrame | None) -> pd.Series:
        if synopses is None:
            return pd.Series(np.nan, index=mal_ids.index, dtype="str")
        column = next((c for c in _SYNOPSIS_COLUMNS if c in synopses.columns), None)
        if "MAL_ID" not in synopses.columns or column is None:
            raise DataValidationError(
                f"synopses table needs MAL_ID and sypnopsis columns, has {list(synopses.columns)}"
            )
        by_id = synopses.drop_duplicates("MAL_ID").set_index("MAL_ID")[column].astype("str")
        return pd.Series(by_id.reindex(mal_ids.to_numpy()).to_numpy(), index=mal_ids.index, dtype="str")

    def _rows_of(self, mal_ids: np.ndarray) -> np.ndarray:
        """Anime-table rows of MAL_IDs (-1 where absent)."""
        return self._row_lookup.positions(mal_ids)

    def name_suggestions(self, query: str, n: int) -> list[dict[str, object]]:
        """Anime whose names match what was typed so far: word starts first, then close spellings.

        Returns:
            Up to ``n`` dicts ``MAL_ID, match`` (the name that matched), ``Name``, ``Type``.
        """
        found = self.names.suggest(query, n) if query.strip() else []  # type: ignore[attr-defined]
        rows = self._rows_of(np.array([m for _, m in found], np.int64))
        return [{"MAL_ID": m, "match": name, "Name": str(self._names_arr[r]), "Type": str(self._types_arr[r])}
                for (name, m), r in zip(found, rows.tolist())]

    def in_catalogue(self, mal_ids: np.ndarray) -> np.ndarray:
        """Which of ``mal_ids`` the anime table holds (a boolean per id)."""
        mal_ids = np.asarray(mal_ids, np.int64)
        return self._rows_of(mal_ids) >= 0

    def resolve_anime(self, query: int | str) -> int:
        """MAL_ID of an anime given by MAL_ID or by (forgiving) name.

        A string of digits that is not an anime's name is read as a MAL_ID.

        Raises:
            UserInputError: unknown id or name (with close matches), or a non-int/str query.
        """
        if isinstance(query, str):
            check_name(query)
            if ASCII_DIGITS.fullmatch(query) and query not in self.names:
                return self.resolve_anime(int(query))  # "5114" from a config file means a MAL_ID
            return self.names.lookup(query)
        if is_integer(query):
            mal_id = int(query)  # type: ignore[call-overload]
            # Regression: an id beyond int64 (e.g. typed into the HTTP API) raised OverflowError, a 500.
            if not 0 <= mal_id < 2**63 or self._rows_of(np.array([mal_id]))[0] < 0:
                raise UserInputError(
                    f"unknown anime id {mal_id}: not in the anime table ({len(self._meta):,} anime, MAL_IDs "
                    f"{self._mal_sorted[0]}..{self._mal_sorted[-1]}); query by name or use random_anime()"
                )
            return mal_id
        raise UserInputError(f"an anime must be given by MAL_ID (int) or name (str), got {query!r}")

    def _anime_position(self, mal_id: int) -> int:
        pos = int(self._row_to_emb[self._rows_of(np.array([mal_id]))[0]])
        if pos < 0:
            name = self._names_arr[self._rows_of(np.array([mal_id]))[0]]
            raise UserInputError(
                f"anime {name!r} (MAL_ID {mal_id}) has no embedding: the model was trained without it "
                f"(too few ratings); pick another anime"
            )
        return pos

    @staticmethod
    def _known(requested: str | Iterable[str] | None, keys: dict[str, int], labels: Sequence[str], what: str) -> list[str]:
        """Map user-typed labels (any case) to the data's labels; unknown ones raise, listing the choices."""
        wanted = str_to_list(requested)
        unknown = [label for label in wanted if normalise_name(label) not in keys]
        if unknown:
            raise UserInputError(f"unknown {what} {unknown[0]!r}; choose from: {_preview(labels)}")
        return [labels[keys[normalise_name(label)]] for label in wanted]

    def _genre_columns(self, genres: str | Iterable[str] | None) -> list[str]:
        return self._known(genres, self._genre_key, self.genres, "genre")

    def _type_codes(self, types: str | Iterable[str] | None) -> list[str]:
        return self._known(types, self._type_key, self.types, "type")

    @staticmethod
    def _score_bounds(min_score: float | None, max_score: float | None) -> tuple[float | None, float | None]:
        for label, value in (("min_score", min_score), ("max_score", max_score)):
            if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)
                                      or not np.isfinite(value)):
                raise UserInputError(f"{label} must be a number or None, got {value!r}")
        if min_score is not None and max_score is not None and min_score > max_score:
            raise UserInputError(f"min_score {min_score} is above max_score {max_score}; swap them")
        return min_score, max_score

    def _filter_steps(
        self,
        genres: str | Iterable[str] | None,
        types: str | Iterable[str] | None,
        min_score: float | None,
        max_score: float | None,
        space: str,
    ) -> list[tuple[str, np.ndarray]]:
        """Boolean masks of the requested filters, labelled for error messages.

        ``space`` is ``"emb"`` (embedding rows) or ``"row"`` (anime-table rows).
        """
        G, kind, score = (
            (self._G_emb, self._type_emb, self._score_emb)
            if space == "emb"
            else (self._G[:-1], self._type[:-1], self._score[:-1])
        )
        steps: list[tuple[str, np.ndarray]] = []
        wanted_genres = self._genre_columns(genres)
        if wanted_genres:
            cols = [self.genres.index(g) for g in wanted_genres]
            steps.append((f"genres {wanted_genres}", G[:, cols].any(axis=1)))
        wanted_types = self._type_codes(types)
        if wanted_types:
            codes = [self.types.index(t) for t in wanted_types]
            steps.append((f"types {wanted_types}", np.isin(kind, codes)))
        low, high = self._score_bounds(min_score, max_score)
        if low is not None or high is not None:
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(score)
                if low is not None:
                    ok &= score >= low
                if high is not None:
                    ok &= score <= high
            steps.append((f"score range [{low}, {high}]", ok))
        return steps

    @staticmethod
    def _apply(base: np.ndarray, steps: list[tuple[str, np.ndarray]], what: str) -> np.ndarray:
        """AND the filter masks into ``base``; name the filter that leaves nothing."""
        mask = base
        for label, step in steps:
            before = int(mask.sum())
            mask = mask & step
            if before and not mask.any():
                hint = _HINTS.get(label, "widen or drop it")
                raise UserInputError(
                    f"no {what} left after the {label} filter ({before:,} candidates before it); {hint}"
                )
        return mask

    def _id_mask(self, mal_ids: Iterable[int] | None, label: str) -> np.ndarray | None:
        """Embedding-row mask of MAL_IDs given as ``items`` / ``exclude``."""
        if mal_ids is None:
            return None
        ids = np.asarray(list(mal_ids) if not isinstance(mal_ids, np.ndarray) else mal_ids, np.int64).ravel()
        pos = self.anime_encoder.transform(ids, missing="minus_one")
        if label == "items" and (pos < 0).any():
            raise UserInputError(
                f"items contains MAL_IDs the model does not know: {ids[pos < 0][:5].tolist()}; drop them"
            )
        mask = np.zeros(self.n_anime, dtype=bool)
        mask[pos[pos >= 0]] = True
        return mask

    def _with_id_filters(self, steps: list[tuple[str, np.ndarray]], items: Iterable[int] | None,
                         exclude: Iterable[int] | None) -> list[tuple[str, np.ndarray]]:
        """``steps`` with the ``items`` restriction first and the ``exclude`` mask last (embedding rows)."""
        restrict = self._id_mask(items, "items")
        dropped = self._id_mask(exclude, "exclude")
        return ([("items", restrict)] if restrict is not None else []) + steps + (
            [("exclude", ~dropped)] if dropped is not None else [])

    def _note_short(self, frame: pd.DataFrame, n: int, available: int, why: str) -> pd.DataFrame:
        if available < n:
            note = f"only {available} results (asked for {n}): {why}"
            logger.warning(note)
            frame.attrs["note"] = note
        return frame

    def _anime_frame(self, rows: np.ndarray, computed: dict[str, object]) -> pd.DataFrame:
        """Metadata of anime-table ``rows`` with ``computed`` columns inserted after ``Name``."""
        rows = np.asarray(rows, np.int64)
        picked = {column: pd.Series(values[rows], dtype=values.dtype, copy=False) for column, values in self._meta_arrays.items()}
        first, rest = list(RESULT_COLUMNS[:2]), list(RESULT_COLUMNS[2:])
        return pd.DataFrame({**{c: picked[c] for c in first}, **computed, **{c: picked[c] for c in rest}}, copy=False)
