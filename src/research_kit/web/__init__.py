"""The data-access committee's review web app (``research-kit serve``): pages over the same functions as the CLI."""
