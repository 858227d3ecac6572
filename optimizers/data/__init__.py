"""Data for the techniques: calibration/evaluation feeds (feeds.py), labelled training splits (labelled.py) and
the built-in digits example (digits.py)."""
