"""The Recurrent Space-time Graph (RSTG, spec §2-§7)."""
