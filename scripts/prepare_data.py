"""python scripts/prepare_data.py task=<task> [dataset=<name>]: see configs/prepare_data.yaml."""

from transformer.cli import prepare_main

if __name__ == "__main__":
    prepare_main()
