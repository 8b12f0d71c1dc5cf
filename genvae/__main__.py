"""``python -m genvae`` (and ``accelerate launch -m genvae train ...``)."""

from genvae.cli import main

if __name__ == "__main__":
    main()
