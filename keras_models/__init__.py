"""Functional-API model builders. keras layers and keras.ops only: they run on every backend."""
