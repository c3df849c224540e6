"""Plans: the declarative side of Skyops (`skyops --apply plan.toml`).

`schema` reads and validates a plan file, `diff` compares it with the grid without
changing it, `apply` carries it out whole or not at all. All pure: no I/O but reading
the plan file itself.
"""
