"""`python -m controller` is `farmctl`."""

from controller.cli import main

raise SystemExit(main())
