"""python scripts/serve.py [overrides]: see configs/serve.yaml."""

from transformer.cli import serve_main

if __name__ == "__main__":
    serve_main()
