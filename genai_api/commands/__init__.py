"""The CLI commands beyond `serve`: `warm` (fill the cache from a batch file) and `stats`
(print a running server's savings). `genai_api.cli` parses the arguments."""
