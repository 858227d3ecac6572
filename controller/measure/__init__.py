"""Measuring: the bench/profile API and its settings, the model pre-flight check, the built-in examples, the results store and its reports."""
