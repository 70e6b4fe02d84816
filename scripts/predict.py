"""python scripts/predict.py [overrides]: see configs/predict.yaml."""

from transformer.cli import predict_main

if __name__ == "__main__":
    predict_main()
