"""Developer tools run through make (generators of committed files); not installed with
the package."""
