"""``python -m training.export``: the same as ``image-utility export``."""

from training.export.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
