"""Every step option, declared once: its flag, the config key it comes from, its type, bounds and help.

``config/config.yaml`` holds the values; this table says what each one is. From it come:

- each step script's argparse parser (:func:`step_parser`), defaults taken from ``config.yaml``;
- each step's ``MLproject`` parameters and command (``scripts/gen_mlproject.py``);
- the parameters ``main.py`` passes to each step (:func:`step_values`, used by :mod:`anime_recs.pipeline.run`);
- the validation rules of the config (:func:`config_rules`, checked before any step runs);
- the defaults of the CLI and the HTTP API (:func:`config_default`).

So adding an option is one line here and one line in ``config.yaml``; ``tests/test_options.py`` fails on any copy
that disagrees.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anime_recs.core.errors import UserInputError, plain
from anime_recs.core.config import (
    Rule,
    make_parser,
    optional_float,
    optional_int,
    str_to_bool,
    str_to_list,
)

#: The Hydra config whose values are every option's default.
CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "config.yaml"

Config = Mapping[str, Any]

#: How each kind of option is parsed from the command line (MLproject passes strings).
PARSERS: dict[str, Callable[[str], Any] | None] = {
    "str": None, "path": None, "source": None, "model_config": None, "int": int, "float": float, "bool": str_to_bool,
    "list": str_to_list, "optional_int": optional_int, "optional_float": optional_float,
}
#: The MLproject parameter type of each kind.
MLPROJECT_TYPES = {"int": "int", "optional_int": "int", "float": "float", "optional_float": "float"}

COUNT = Rule("int", low=1)
NON_NEGATIVE = Rule("int", low=0)
FLAG = Rule("bool")
USER_ID = Rule("int", low=0, optional=True)
POSITIVE = Rule("number", low=0, open_low=True)


@dataclass(frozen=True)
class Option:
    """One parameter of a step.

    Attributes:
        name: The step's parameter and ``--flag`` name.
        key: The ``group.name`` in ``config.yaml`` it takes its value from (None: ``derive`` or ``default``).
        kind: ``str``, ``int``, ``float``, ``bool``, ``list``, ``optional_int``, ``optional_float``, ``path``
            (a local folder or file, made absolute by the pipeline), ``source`` (a download source) or
            ``model_config`` (the model groups, passed as one file).
        help: What it does, for ``--help``.
        rule: Type and bounds of the config value (checked before any step runs).
        derive: Its value from the whole config, when it is not one key.
        default: Its value when it has neither ``key`` nor ``derive``.
    """

    name: str
    key: str | None
    kind: str = "str"
    help: str = ""
    rule: Rule | None = None
    derive: Callable[[Config], Any] | None = None
    default: Any = None

    def value(self, cfg: Config) -> Any:
        """This option's value in a resolved config."""
        if self.derive is not None:
            return self.derive(cfg)
        if self.key is None:
            return self.default
        return lookup(cfg, self.key)


def lookup(cfg: Config, key: str) -> Any:
    """``cfg["group"]["name"]`` for ``"group.name"``."""
    group, _, name = key.partition(".")
    return cfg[group][name]


def _cloud_options(prefix: str) -> tuple[Option, ...]:
    """Favourite-percentile and word cloud options (user_prefs, user_recs)."""
    return (
        Option("favorite_percentile", "users.favorite_percentile", "float",
               "favourites: rated at or above this percentile of the user's own ratings", Rule("number", low=0, high=1)),
        Option("cloud_width", "users.cloud_width", "int", "word cloud width in pixels", COUNT),
        Option("cloud_height", "users.cloud_height", "int", "word cloud height in pixels", COUNT),
        Option("genre_fn", None, help="genre cloud file name", derive=lambda c: prefix + lookup(c, "users.genre_fn")),
        Option("source_fn", None, help="source cloud file name", derive=lambda c: prefix + lookup(c, "users.source_fn")),
        Option("cloud_type", "users.cloud_type", help="artifact type of the clouds"),
    )


def _filter(flag: str, flag_key: str, values: str, values_key: str, what: str, example: str) -> tuple[Option, ...]:
    """A filter a recommender step can switch on: the switch and the values it keeps (any of them)."""
    return (Option(flag, flag_key, "bool", f"keep only anime with one of --{values}" if what == "genres"
                   else f"keep only anime of --{values}", FLAG),
            Option(values, values_key, "list", f"{what}, e.g. '{example}'"))


def _output(name: str, name_key: str, type_name: str, type_key: str, what: str = "output") -> tuple[Option, ...]:
    """The artifact a step publishes: its name and type."""
    return (Option(name, name_key, help=f"{what} artifact name"), Option(type_name, type_key, help=f"{what} artifact type"))


def _raw_file(kind: str, config_name: str, type_key: str, description_key: str) -> tuple[Option, ...]:
    return (
        Option(f"{kind}_url", f"data.{kind}_url", "source", f"{kind} source: 'sample', an http(s) URL, a file:// URI, a local "
               "path, or mal-api:FOLDER (a finished `anime-recs mal refresh --out FOLDER`)"),
        Option(f"{kind}_artifact", f"data.{config_name}", help=f"artifact name for the {kind} file"),
        Option(f"{kind}_type", f"data.{type_key}", help=f"artifact type for the {kind} file"),
        Option(f"{kind}_description", f"data.{description_key}", help=f"artifact description for the {kind} file"),
    )


MIN_RATINGS = Option("min_ratings", "similarity.min_ratings", "optional_int",
                     "anime rated by fewer users (users with fewer ratings) are never returned as similar; "
                     "null: max(5, sqrt(mean ratings per anime)) of the data", Rule("int", low=0, optional=True))
SEED = Option("random_seed", "main.random_seed", "int", "seed of the sample data, the training split and shuffle, and random "
              "users/anime", NON_NEGATIVE)
#: The four input artifacts every recommender step reads (the model version and its data).
RECOMMENDER_INPUTS = (
    Option("embeddings", "nn_arts.main_embeddings", help="fitted model artifact from neural_network (any model family)"),
    Option("main_df", "data.preprocessed_artifact_latest", help="preprocessed stats artifact"),
    Option("anime_df", "data.all_anime_artifact_latest", help="all-anime artifact"),
    Option("synopses_df", "data.sypnopses_artifact_latest", help="synopses artifact"),
    SEED,
)
def _user_options(query_key: str, random_key: str, from_flow: str | bool) -> tuple[Option, ...]:
    """The inputs of a recommender step about one user, and how it picks the user: the flow's id artifact, a
    configured id, or random."""
    flow = (Option("from_flow", from_flow, "bool", "use the user id published by the similar_users step (--flow_artifact) "
                   "when it exists", FLAG) if isinstance(from_flow, str) else
            Option("from_flow", None, "bool", "use the user id published by an earlier similar_users step", default=from_flow))
    return (
        *RECOMMENDER_INPUTS,
        Option("user_query", query_key, "optional_int", "user id to query (null: random)", USER_ID),
        Option("random_user", random_key, "bool", "pick a random user instead of --user_query (also when it is null)", FLAG),
        flow,
        Option("flow_artifact", "users.flow_user", help="the id artifact of the similar_users step"),
        Option("max_ratings", "similarity.max_ratings", "optional_int", "random users have at most this many ratings",
               Rule("int", low=1, optional=True)),
    )


MODEL_CONFIG = Option("model_config", None, "model_config", "YAML/JSON with the model options (its `model` and `nn_arts` "
                      "groups)", default="../config/config.yaml")
MODEL_INPUT = (
    Option("input_data", "data.preprocessed_artifact_latest", help="preprocessed stats artifact NAME:VERSION"),
    Option("input_type", "data.preprocessed_artifact_type", help="expected type of --input_data"),
    MODEL_CONFIG,
    Option("overrides", None, help="model options to override, e.g. 'family=original epochs=3' or "
           "'ranking.l2_per_count=40'", default=""),
)

#: Every step's options, in pipeline order (a step listed here has a folder of the same name).
STEP_OPTIONS: dict[str, tuple[Option, ...]] = {
    "download": (
        *_raw_file("stats", "stats_artifact", "stats_artifact_type", "stats_artifact_description"),
        *_raw_file("all_anime", "all_anime_artifact", "all_anime_type", "all_anime_description"),
        *_raw_file("synopses", "synopses_artifact", "synopses_artifact_type", "synopses_artifact_description"),
        Option("from_local", "data.from_local", "bool", "read user stats from --local_fname (CSV converted to parquet in "
               "chunks)", FLAG),
        Option("local_fname", "data.local_fname", "path", "local user-stats CSV or parquet used when --from_local is true"),
        Option("save_raw_locally", "data.save_raw_locally", "bool", "also copy the raw files to --raw_dir", FLAG),
        Option("raw_dir", None, "path", "folder for local copies of the raw files",
               derive=lambda c: str(Path(lookup(c, "data.local_dir")) / "raw")),
        Option("sample_users", "data.sample_users", "int", "users in the embedded sample", COUNT),
        Option("sample_anime", "data.sample_anime", "int", "anime in the embedded sample", COUNT),
        Option("sample_mean_items", "data.sample_mean_items", "int", "mean list entries per user in the sample", COUNT),
        Option("download_timeout", "data.download_timeout", "float", "seconds a download may take in all", POSITIVE),
        SEED,
    ),
    "preprocess": (
        Option("raw_stats", "data.stats_artifact_latest", help="raw user-stats artifact NAME:VERSION"),
        Option("all_anime", "data.all_anime_artifact_latest", help="all-anime artifact (episode counts for "
               "--drop_half_watched)"),
        Option("raw_type", "data.stats_artifact_type", help="expected type of the raw artifacts"),
        *_output("preprocessed_stats", "data.preprocessed_stats", "preprocessed_artifact_type",
                 "data.preprocessed_artifact_type"),
        Option("preprocessed_artifact_description", "data.preprocessed_artifact_description", help="output description"),
        Option("num_reviews", "data.num_reviews", "int", "keep only users with at least this many rows after the other "
               "rules", NON_NEGATIVE),
        Option("drop_half_watched", "data.drop_half_watched", "bool", "drop rows where under half the episodes were "
               "watched", FLAG),
        Option("drop_unwatched", "data.drop_unwatched", "bool", "drop rows with 0 watched episodes", FLAG),
        Option("drop_plan", "data.drop_plan", "bool", "drop plan-to-watch rows (watching_status 6)", FLAG),
        Option("drop_unrated", "data.drop_unrated", "bool", "drop rating 0 rows (MyAnimeList's 'not rated')", FLAG),
        Option("save_clean_locally", "data.save_clean_locally", "bool", "also copy the result to --clean_dir", FLAG),
        Option("clean_dir", None, "path", "folder for the local copy",
               derive=lambda c: str(Path(lookup(c, "data.local_dir")) / "clean")),
        Option("memory_limit_gb", "data.memory_limit_gb", "float", "about how much memory the data may take (batches and "
               "buckets shrink to fit)", POSITIVE),
    ),
    "neural_network": (
        *MODEL_INPUT,
        Option("anime_df", "data.all_anime_artifact_latest", help="all-anime artifact the model will answer with "
               "(recorded with the model: every answer uses exactly this version)"),
        Option("synopses_df", "data.sypnopses_artifact_latest", help="synopses artifact the model will answer with (recorded too)"),
        SEED,
    ),
    "evaluate": (
        *MODEL_INPUT,
        Option("relevant_threshold", "evaluation.relevant_threshold", "float", "a TEST rating at or above this is relevant "
               "(1-10 scale)", Rule("number")),
        Option("k", "evaluation.k", "int", "ranking cut-off", COUNT),
        *_output("output", "evaluation.metrics_artifact", "output_type", "evaluation.metrics_type"),
        SEED,
    ),
    "similar_anime": (
        *RECOMMENDER_INPUTS,
        Option("anime_query", "similarity.anime_query", help="anime name (any of its names; case, accents, symbols "
               "ignored) or MAL_ID"),
        Option("random_anime", "similarity.random_anime", "bool", "query a random anime instead", FLAG),
        Option("a_query_number", "similarity.a_query_number", "int", "how many similar anime", COUNT),
        MIN_RATINGS,
        *_filter("an_spec_genres", "similarity.an_spec_genres", "anime_rec_genres", "similarity.anime_rec_genres", "genres",
                 "Action,Comedy"),
        *_filter("spec_types", "similarity.spec_types", "types", "similarity.types", "types", "TV,Movie"),
        *_output("sim_anime_fn", "similarity.sim_anime_fn", "sim_anime_type", "similarity.sim_anime_type"),
    ),
    "similar_users": (
        *_user_options("users.sim_user_query", "similarity.sim_random_user", False),
        Option("id_query_number", "similarity.id_query_number", "int", "how many similar users", COUNT),
        MIN_RATINGS,
        Option("num_faves", "users.num_faves", "int", "favourites listed per similar user", COUNT),
        Option("TV_only", "users.TV_only", "bool", "list only TV series as favourites", FLAG),
        *_output("sim_users_fn", "users.sim_users_fn", "sim_users_type", "users.sim_users_type"),
        *_output("ID_fn", "users.ID_fn", "ID_type", "users.ID_type", "user id"),
    ),
    "user_prefs": (
        *_user_options("users.prefs_user_query", "users.pref_random_user", "users.prefs_from_flow"),
        *_cloud_options(""),
        *_output("prefs_csv", "users.prefs_csv", "prefs_type", "users.fave_art_type"),
        Option("clouds_artifact", "users.prefs_clouds", help="artifact name of the word clouds"),
    ),
    "user_recs": (
        *_user_options("users.user_recs_query", "users.user_recs_random", "users.recs_ID_from_flow"),
        *_cloud_options("recs_"),
        Option("user_num_recs", "users.user_num_recs", "int", "how many recommendations", COUNT),
        Option("recs_n_sim_ID", "users.recs_n_sim_ID", "int", "how many similar users to ask", COUNT),
        Option("num_faves", "users.num_faves", "int", "favourites taken from each similar user", COUNT),
        *_filter("ID_spec_genres", "users.ID_spec_genres", "ID_rec_genres", "users.ID_rec_genres", "genres", "Action,Comedy"),
        *_output("user_recs_fn", "users.user_recs_fn", "user_recs_type", "users.user_recs_type"),
        Option("clouds_artifact", "users.recs_clouds", help="artifact name of the word clouds"),
    ),
    "model_recs": (
        *_user_options("model_recs.model_user_query", "model_recs.model_random_user", "model_recs.model_ID_flow"),
        Option("model_num_recs", "model_recs.model_num_recs", "int", "how many recommendations", COUNT),
        *_filter("specify_types", "model_recs.specify_types", "anime_types", "model_recs.anime_types", "types", "TV,OVA"),
        *_filter("specify_genres", "model_recs.specify_genres", "model_genres", "model_recs.model_genres", "genres",
                 "Action,Comedy"),
        Option("min_score", "model_recs.min_score", "optional_float", "keep anime whose MyAnimeList Score is at least this",
               Rule("number", low=0, high=10, optional=True)),
        Option("max_score", "model_recs.max_score", "optional_float", "keep anime whose MyAnimeList Score is at most this",
               Rule("number", low=0, high=10, optional=True)),
        *_output("model_recs_fn", "model_recs.model_recs_fn", "model_recs_type", "model_recs.model_recs_type"),
    ),
}
STEPS: tuple[str, ...] = tuple(STEP_OPTIONS)

#: Rules of config keys that no step option carries: the pipeline's own keys and the model groups (which travel to
#: neural_network and evaluate as one file).
OTHER_RULES: dict[str, Rule] = {
    "main.verbose": FLAG,
    "model.test_size": Rule("size"),
    "model.holdout_fraction": Rule("number", low=0, high=1, open_high=True),
    **{f"model.{key}": COUNT for key in ("embedding_size", "batch_size", "epochs")},
    **{f"model.{key}": NON_NEGATIVE for key in ("rampup_epochs", "sustain_epochs", "patience")},
    **{f"model.{key}": POSITIVE for key in ("start_lr", "min_lr", "max_lr")},
    "model.exp_decay": Rule("number", low=0, high=1, open_low=True),
    "model.l2_reg_factor": Rule("number", low=0),
    **{f"model.{key}": FLAG for key in ("jit_compile", "resume", "TPU_init", "multi_worker")},
    "model.stream_above_rows": Rule("int", low=0, optional=True),
}


#: Config keys the pipeline itself reads (none of them is one step's parameter), and the module reading each.
PIPELINE_READS: dict[str, str] = {
    **{f"main.{key}": "anime_recs.pipeline.run" for key in (
        "project_name", "experiment_name", "execute_steps", "env_manager", "steps_repository", "steps_version",
        "download_repository", "wandb_mode", "artifact_backend", "artifact_root", "verbose")},
    "data.dir": "anime_recs.data.upstream",  # data=files: the folder the `dir` sources come from
}


#: Keys of the ``model`` group every family uses (the data split, the published artifacts' names).
SHARED_MODEL_KEYS = frozenset({"family", "test_size", "holdout_fraction", "model_artifact", "embeddings_artifact"})
#: Keys of the ``model`` group only the original network's training run uses (besides the network's own options).
NETWORK_RUN_KEYS = frozenset({"resume", "TPU_init", "TPU_address", "multi_worker", "stream_above_rows", "weights_artifact",
                              "history_csv", "loss_plot", "val_fraction", "seed"})
#: The ``nn_arts`` group travels with the model group to the neural_network step (artifact types and references).
NN_ARTS_KEYS = frozenset({"model_type", "weights_type", "history_type", "figure_type", "embeddings_type", "main_embeddings"})
#: The family whose network the network-only keys belong to.
NETWORK_FAMILY = "original"


@functools.cache
def family_keys(family: str) -> frozenset[str]:
    """The top-level keys ``config/model/<family>.yaml`` sets: the options that family has (empty for no such file)."""
    import yaml

    path = CONFIG_FILE.parent / "model" / f"{family}.yaml"
    if not path.is_file():
        return frozenset()
    with open(path, encoding="utf-8") as handle:
        return frozenset(yaml.safe_load(handle) or {}) - {"family"}


def network_only_keys() -> frozenset[str]:
    """Keys of the ``model`` group only ``model=original`` uses: its run keys and the network's options."""
    return NETWORK_RUN_KEYS | family_keys(NETWORK_FAMILY)


def check_model_overrides(family: str, keys: list[str]) -> None:
    """Refuse, in one line, a ``model.KEY`` that ``family`` would silently ignore (a network-only key on another family).

    Args:
        family: the chosen family.
        keys: the ``model`` keys set (``"epochs"``, ``"ranking.l2_per_count"``).

    Raises:
        UserInputError: naming the key and the family that uses it.
    """
    if family == NETWORK_FAMILY:
        return
    for key in keys:
        top = key.split(".")[0]
        if top in network_only_keys() and top not in SHARED_MODEL_KEYS and top not in family_keys(family):
            raise UserInputError(f"model.{key} applies only to the original network (model=original); the family {family!r} "
                                 f"has no network and would ignore it: drop model.{key} or add model=original")


def config_rules() -> dict[str, Rule]:
    """Config key -> rule, from every option's rule and :data:`OTHER_RULES`."""
    rules: dict[str, Rule] = {}
    for options in STEP_OPTIONS.values():
        for option in options:
            if option.rule is not None and option.key is not None:
                rules[option.key] = option.rule
    return {**rules, **OTHER_RULES}


@functools.cache
def default_config() -> dict[str, Any]:
    """``config/config.yaml`` as plain data (the groups chosen on the command line do not change step options)."""
    import yaml

    with open(CONFIG_FILE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def config_default(key: str) -> Any:
    """The default of one config key (``"users.favorite_percentile"``), for the CLI and the HTTP API."""
    return lookup(default_config(), key)


@functools.cache
def answer_defaults() -> dict[str, Any]:
    """The defaults of the question every front end asks (``anime-recs``, the HTTP API), from the steps' options."""
    keys = {"similar_anime": "similarity.a_query_number", "similar_users": "similarity.id_query_number",
            "num_faves": "users.num_faves", "recommend": "model_recs.model_num_recs",
            "similar_user_recs": "users.user_num_recs", "n_similar": "users.recs_n_sim_ID",
            "favorite_percentile": "users.favorite_percentile"}
    return {name: config_default(key) for name, key in keys.items()}


def step_values(step: str, cfg: Config) -> dict[str, Any]:
    """Option name -> value of one step in a resolved config (before the pipeline makes paths absolute)."""
    return {option.name: option.value(cfg) for option in STEP_OPTIONS[step]}


def step_parser(step: str, description: str) -> argparse.ArgumentParser:
    """The argparse parser of one step's script: every option, typed, with its ``config.yaml`` default."""
    parser = make_parser(description.strip().splitlines()[0])
    defaults = step_values(step, default_config())
    for option in STEP_OPTIONS[step]:
        kind = PARSERS[option.kind]
        default = defaults[option.name]
        if option.kind == "list":
            default = str_to_list(default)
        elif option.kind == "float" and default is not None:
            default = float(default)
        parser.add_argument(f"--{option.name}", default=default, help=option.help, **({"type": kind} if kind else {}))
    return parser


def validate_config(cfg: Mapping[str, Any], schema: Mapping[str, Rule] | None = None) -> None:
    """Check every key of ``schema`` present in ``cfg`` (a resolved Hydra config) before any work starts.

    Raises:
        UserInputError: naming the first key whose value has the wrong type or is out of range.
    """
    for key, rule in (config_rules() if schema is None else schema).items():
        group, _, name = key.partition(".")
        section = cfg.get(group)
        if not isinstance(section, Mapping) or name not in section:
            continue
        value = section[name]
        if not rule.accepts(value):
            raise UserInputError(f"{key} must be {rule.expected()}, got {plain(value)}; fix it in config/config.yaml "
                                 f"or on the command line ({key}=...)")
