"""Tokenize, encode and cache a dataset.

python scripts/prepare_data.py task=translation dataset=multi30k_de_en paths.data_root=../shared/data
"""

import hydra
from omegaconf import DictConfig

from transformer.data.prepare import prepare_from_config


@hydra.main(config_path="../configs", config_name="prepare_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    prepare_from_config(cfg)


if __name__ == "__main__":
    main()
