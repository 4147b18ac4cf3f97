"""``python -m training.train``: the same as ``image-utility train``."""

from training.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
