"""python scripts/train.py [overrides]: see configs/train.yaml."""

from transformer.cli import train_main

if __name__ == "__main__":
    train_main()
