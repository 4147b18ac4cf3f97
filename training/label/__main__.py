"""``python -m training.label``: the same as ``image-utility label``."""

from training.label.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
