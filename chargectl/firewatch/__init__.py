"""Fire-risk watch: the signs before a battery fire, read from each session's power curve."""
