"""Measurement: the protocol (warm-up, loop, rounds), statistics, one cell's round."""
