"""The leader's socket API: one front door for every process that is not the leader
(consoles that follow, the CLI, scripts, remote consoles). See docs/api.md."""
