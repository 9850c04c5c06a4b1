"""Whole classifiers per task: backbone + graph + prediction layer (spec §7.4-§7.6)."""
