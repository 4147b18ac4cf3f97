"""``python -m training.evaluate``: the same as ``image-utility evaluate``."""

from training.evaluate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
