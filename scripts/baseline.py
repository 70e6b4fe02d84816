"""python scripts/baseline.py task=<name> [dataset=...]: the task's simple baseline (configs/baseline.yaml)."""

from transformer.cli import baseline_main

if __name__ == "__main__":
    baseline_main()
