"""Cyphercat: how much does a trained model leak about its training data, and what does each defense buy back?"""

__version__ = "0.2.0"
