"""Regenerate every example CSV and PNG in figure_file/ from a pipeline run on real MyAnimeList data.

Runs all nine steps through `mlflow run` in a temporary folder on the files in
``../shared/data/mal2020`` (the first 100k rows of ``rating_complete.csv``, the full
2020 anime table, the synopses head), then copies the newest version of each output
artifact here.

    python figure_file/make_figures.py                # default: ../shared/data/mal2020
    python figure_file/make_figures.py --data-dir /path/to/mal2020 --keep
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anime_recs.store.artifacts import ArtifactStore  # noqa: E402

# artifact name -> file names to copy (inside the artifact) -> name here
OUTPUTS = {
    "anime_nn_history.csv": {"history.csv": "anime_nn_history.csv"},
    "anime_nn_loss.png": {"loss.png": "Neural_Network_Loss.png"},
    "evaluation_metrics.csv": {"evaluation_metrics.csv": "evaluation_metrics.csv"},
    "similar_anime.csv": {"similar_anime.csv": "anime_similar_to_{query}.csv"},
    "similar_users.csv": {"similar_users.csv": "User_{user}_similar_users.csv"},
    "user_prefs.csv": {"user_prefs.csv": "User_ID_{user}_user_prefs.csv"},
    "user_prefs_clouds": {"favorite_genres.png": "User_ID_{user}_favorite_genres.png",
                          "favorite_source_material.png": "User_ID_{user}_favorite_source_material.png"},
    "user_recs.csv": {"user_recs.csv": "User_ID_{user}_user_recs.csv"},
    "model_recs.csv": {"model_recs.csv": "User_ID_{user}_model_recs.csv"},
}


def hydra_options(data_dir: Path, query: str, model: str) -> str:
    """The overrides that point the pipeline at the real files."""
    return " ".join([
        f"model={model}",
        f"data.stats_url={data_dir / 'rating_complete_head100k.csv'}",
        f"data.all_anime_url={data_dir / 'anime_2020.parquet'}",
        f"data.synopses_url={data_dir / 'anime_with_synopsis_head269.csv'}",
        "data.num_reviews=20",
        f"similarity.anime_query='{query}'",
    ])


def main() -> None:
    """Run the pipeline on real data and copy its outputs here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "mal2020", help="folder with the MAL files")
    parser.add_argument("--query", default="Cowboy Bebop", help="anime for the similar-anime example")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder (mlflow.db, artifacts/)")
    parser.add_argument("--model", default="hybrid", help="model family (config/model/<family>.yaml), as model=<family>")
    args = parser.parse_args()
    if not (args.data_dir / "rating_complete_head100k.csv").is_file():
        sys.exit(f"error: {args.data_dir} lacks rating_complete_head100k.csv; pass --data-dir")
    work = Path(tempfile.mkdtemp(prefix="anime_figures_"))
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local",
               "-P", f"hydra_options={hydra_options(args.data_dir.resolve(), args.query, args.model)}"]
    print("running:", " ".join(command), flush=True)
    if subprocess.run(command, cwd=work).returncode:
        sys.exit(f"error: the pipeline failed; see above (run folder {work})")
    store = ArtifactStore(work / "artifacts")
    user = store.get("ID_used.csv:latest").metadata["user_id"]
    query = store.get("similar_anime.csv:latest").metadata["query_name"]
    safe_query = "".join(ch for ch in query if ch.isalnum())
    for artifact_name, files in OUTPUTS.items():
        if artifact_name not in store.names():  # history and loss plot exist only for model=original
            for here in files.values():
                stale = REPO / "figure_file" / here.format(user=user, query=safe_query)
                stale.unlink(missing_ok=True)
            print(f"no {artifact_name} (this model family does not train a network)")
            continue
        artifact = store.get(f"{artifact_name}:latest")
        for inside, here in files.items():
            target = REPO / "figure_file" / here.format(user=user, query=safe_query)
            shutil.copyfile(artifact.file(inside), target)
            print(f"wrote {target.relative_to(REPO)}")
    if args.keep:
        print(f"run folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
