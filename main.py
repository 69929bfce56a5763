"""Run the anime_recommendations pipeline: the steps in ``main.execute_steps``, in order.

    mlflow run . --env-manager local
    mlflow run . --env-manager local -P hydra_options="main.execute_steps='download,preprocess'"
    python main.py data.num_reviews=100
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from anime_recs.core.config import setup_logging
from anime_recs.core.errors import AlreadyReported, UserInputError, one_line
from anime_recs.pipeline.run import run_pipeline, split_overrides

PROJECT_DIR = Path(__file__).resolve().parent


@hydra.main(config_path="config", config_name="config", version_base=None)
def go(config: DictConfig) -> None:
    """Hydra entry point."""
    setup_logging()
    cfg = OmegaConf.to_container(config, resolve=True)
    try:
        run_pipeline(cfg, PROJECT_DIR, Path(hydra.utils.get_original_cwd()), list(HydraConfig.get().overrides.task))
    except AlreadyReported:  # a step printed its one-line error already
        sys.exit(2)
    except UserInputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: pipeline stopped (Ctrl-C or SIGTERM); the running step was stopped and published nothing",
              file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    try:
        sys.argv = [sys.argv[0], *split_overrides(sys.argv[1:])]
    except UserInputError as error:
        sys.exit(f"error: {error}")
    go()
