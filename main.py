"""NPC Forge entry point: ``python main.py`` starts the UI; ``--help`` lists commands."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
