"""python scripts/evaluate.py [overrides]: see configs/evaluate.yaml."""

from transformer.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
