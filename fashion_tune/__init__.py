"""fashion_tune: distributed hyperparameter search for a Fashion-MNIST clothing classifier."""

__version__ = "0.1.0"
