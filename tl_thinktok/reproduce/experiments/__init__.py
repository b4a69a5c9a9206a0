"""One module per figure / table; each defines ``NAME`` and ``run(ctx) -> Summary``."""
