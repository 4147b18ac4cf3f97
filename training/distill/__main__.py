"""``python -m training.distill``: the same as ``image-utility distill``."""

from training.distill.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
