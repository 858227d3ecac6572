"""`python -m agent` is `farm-agent`."""

from agent.server import main

raise SystemExit(main())
