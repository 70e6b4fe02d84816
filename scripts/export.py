"""python scripts/export.py [overrides]: see transformer/conf/export.yaml."""

from transformer.cli import export_main

if __name__ == "__main__":
    export_main()
