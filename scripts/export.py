"""python scripts/export.py [overrides]: see configs/export.yaml."""

from transformer.cli import export_main

if __name__ == "__main__":
    export_main()
