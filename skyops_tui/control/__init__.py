"""How processes share one grid: the command vocabulary, the scheduler lease, and
sessions for scripts (see docs/reliability.md, "Several consoles")."""
