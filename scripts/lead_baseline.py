"""python scripts/lead_baseline.py dataset=<name>: see configs/lead_baseline.yaml."""

from transformer.cli import lead_baseline_main

if __name__ == "__main__":
    lead_baseline_main()
