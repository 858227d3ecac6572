"""`python -m controller` is `farmctl`."""

from controller.cli.main import main

raise SystemExit(main())
