"""The dlc runtime: compiled modules, the Model API, datasets and the ``dlc`` CLI."""
