"""Engines that compute the summary state where the logs are (``spark``)."""
