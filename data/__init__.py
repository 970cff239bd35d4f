"""Everything that happens to an image before the first learned layer."""
