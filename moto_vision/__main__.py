"""``python -m moto_vision``: the same entry point as the ``moto-vision`` command."""

from moto_vision.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
