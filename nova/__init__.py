"""Nova: train and tune XGBoost models on market data, on a laptop or in Kubernetes."""

__version__ = "0.1.0"
