"""Shared helpers of the Something-Something v1 and v2 tfds builders."""
